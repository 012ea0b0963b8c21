"""The Mask R-CNN paper's Table 2 ablations as configuration switches: ``mask_loss`` (sigmoid | softmax),
``class_agnostic_masks``, ``roi_pooler`` (align | warp | pool) and ``mask_head`` (fcn | mlp, ``mask_mlp_dim``
wide). For each: the config refuses wrong values by name, a tiny model predicts and trains with it, the switch
changes what it should (checked against a direct computation), and the model's state dict round-trips. The
defaults are torchvision's (their parity: tests/reference/test_mask_rcnn.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np.autograd import Tensor
from mrcnn_np.config import (
    MaskRCNNConfig,
    config_from_dict,
    config_to_dict,
    fasterrcnn_resnet50_fpn,
    resnet50_c4,
    resnet50_fpn,
    tiny,
    tiny_c4,
)
from mrcnn_np.convert import (
    check_torchvision_settings,
    export_to_torchvision,
    load_model,
    load_torchvision_state_dict,
    save_model,
    state_dict_to_torch,
)
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.roi_heads import (
    MaskRCNNHeads,
    MaskRCNNMLPHead,
    MaskRCNNMLPPredictor,
    MaskRCNNPredictor,
    RoIHeads,
    maskrcnn_loss,
    project_masks_on_boxes,
)
from mrcnn_np.nn.losses import cross_entropy_with_probs
from mrcnn_np.ops.poolers import MultiScaleRoIAlign
from mrcnn_np.ops.roi_align import roi_align
from mrcnn_np.ops.roi_pool import roi_pool
from mrcnn_np.ops.roi_warp import roi_warp
from tests.helpers import check_gradients, numerical_grad

SWITCHES = {"mask_loss": "sigmoid", "class_agnostic_masks": False, "roi_pooler": "align", "mask_head": "fcn",
            "mask_mlp_dim": 1024}
# one non-default model per switch (the MLP narrow, to stay small)
ABLATIONS = {
    "softmax": dict(mask_loss="softmax"),
    "class-agnostic": dict(class_agnostic_masks=True),
    "warp": dict(roi_pooler="warp"),
    "pool": dict(roi_pooler="pool"),
    "mlp": dict(mask_head="mlp", mask_mlp_dim=32),
    "mlp-class-agnostic": dict(mask_head="mlp", mask_mlp_dim=16, class_agnostic_masks=True),
}


SMALL = dict(min_size=64, max_size=64, dtype=np.float64, rpn_post_nms_top_n={"training": 64, "testing": 32},
             box_batch_size_per_image=32, box_detections_per_img=10)


def small(**settings):
    """A tiny float64 model's config at 64 x 64, with few RoIs (every stage runs, in about a second)."""
    return tiny(**{**SMALL, **settings})


def data(seed: int = 0, n: int = 2, size=(64, 64)):
    """``n`` random images with one or two boxes each, their masks filling the boxes."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for i in range(n):
        images.append(rng.random((*size, 3)))
        boxes = np.array([[6, 8, 38, 44], [30, 20, 60, 58]][: 1 + i % 2], dtype=np.float64)
        masks = np.zeros((len(boxes), *size), np.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int), strict=True):
            m[y1:y2, x1:x2] = 1
        targets.append({"boxes": boxes, "labels": np.array([2, 3][: len(boxes)]), "masks": masks})
    return images, targets


# --- (a) the settings ---------------------------------------------------------------------------------
def test_the_defaults_are_torchvisions_in_every_preset():
    for config in (MaskRCNNConfig(), resnet50_fpn(), fasterrcnn_resnet50_fpn(), resnet50_c4(), tiny(), tiny_c4()):
        assert {k: getattr(config, k) for k in SWITCHES} == SWITCHES


BAD = [
    ("mask_loss", None, TypeError), ("mask_loss", 1, TypeError), ("mask_loss", ["softmax"], TypeError),
    ("mask_loss", "Softmax", ValueError), ("mask_loss", "bce", ValueError),
    ("class_agnostic_masks", "yes", TypeError), ("class_agnostic_masks", 1, TypeError),
    ("class_agnostic_masks", None, TypeError),
    ("roi_pooler", None, TypeError), ("roi_pooler", 2, TypeError), ("roi_pooler", "roialign", ValueError),
    ("roi_pooler", "RoIPool", ValueError),
    ("mask_head", None, TypeError), ("mask_head", 4, TypeError), ("mask_head", "MLP", ValueError),
    ("mask_head", "conv", ValueError),
    ("mask_mlp_dim", 0, ValueError), ("mask_mlp_dim", -1, ValueError), ("mask_mlp_dim", 1.5, TypeError),
    ("mask_mlp_dim", "1024", TypeError), ("mask_mlp_dim", None, TypeError),
]
ALLOWED = {"mask_loss": "('sigmoid', 'softmax')", "roi_pooler": "('align', 'warp', 'pool')",
           "mask_head": "('fcn', 'mlp')", "class_agnostic_masks": "True or False", "mask_mlp_dim": ""}


@pytest.mark.parametrize(("name", "value", "error"), BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
@pytest.mark.parametrize("build", ["MaskRCNNConfig", "tiny", "config_from_dict", "without-the-mask-branch"])
def test_wrong_values_are_refused_naming_the_setting_and_the_choices(build, name, value, error):
    if build == "config_from_dict":
        d = config_to_dict(tiny())
        d[name] = value
        call = lambda: config_from_dict(d)  # noqa: E731
    elif build == "without-the-mask-branch":  # checked even where the mask settings are unused
        call = lambda: tiny(mask_branch=False, **{name: value})  # noqa: E731
    else:
        call = lambda: {"MaskRCNNConfig": MaskRCNNConfig, "tiny": tiny}[build](**{name: value})  # noqa: E731
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error and name in str(info.value) and ALLOWED[name] in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("settings", "names"), [
    (dict(mask_loss="softmax", class_agnostic_masks=True), ("mask_loss", "class_agnostic_masks")),
    (dict(mask_head="mlp", architecture="c4", roi_featmap_names=("0",), anchor_sizes=((32,),),
          aspect_ratios=((1.0,),)), ("mask_head", "architecture='c4'")),
])
def test_combinations_without_a_meaning_are_refused(settings, names):
    with pytest.raises(ValueError) as info:
        MaskRCNNConfig(**settings)
    assert all(n in str(info.value) for n in names)


def test_the_settings_round_trip_through_json_and_old_dicts_load_the_defaults():
    for settings in ABLATIONS.values():
        c = tiny(**settings, mask_branch=True)
        d = config_to_dict(c)
        assert {k: d[k] for k in settings} == settings
        assert config_from_dict(d) == c
    d = config_to_dict(tiny(mask_loss="softmax", roi_pooler="pool"))
    for name in SWITCHES:  # a configuration saved before the switches existed
        d.pop(name)
    assert config_from_dict(d) == tiny()
    assert tiny(class_agnostic_masks=np.bool_(True)).class_agnostic_masks is True  # normalised to a bool


def test_without_the_mask_branch_the_mask_settings_are_unused_and_the_pooler_is_not():
    faster = MaskRCNN(small(mask_branch=False), rng=3)
    ablated = MaskRCNN(small(mask_branch=False, mask_loss="softmax", mask_head="mlp", mask_mlp_dim=8), rng=3)
    assert not ablated.roi_heads.has_mask()
    sd, ref = ablated.state_dict(), faster.state_dict()
    assert list(sd) == list(ref) and all(np.array_equal(sd[k], ref[k]) for k in sd)
    check_torchvision_settings(ablated, "export")  # nothing of it reaches torchvision's Faster R-CNN
    pooled = MaskRCNN(small(mask_branch=False, roi_pooler="pool"), rng=3)
    assert pooled.roi_heads.box_roi_pool.roi_pooler == "pool"
    with pytest.raises(ValueError, match="roi_pooler='pool'"):
        check_torchvision_settings(pooled, "export")


# --- (b) every switch predicts and trains ----------------------------------------------------------
@pytest.mark.parametrize("name", [*ABLATIONS, "c4-softmax-warp", "c4-class-agnostic-pool"])
def test_a_tiny_model_with_the_switch_predicts_and_trains(name):
    if name.startswith("c4"):
        settings = dict(mask_loss="softmax", roi_pooler="warp") if "softmax" in name else \
            dict(class_agnostic_masks=True, roi_pooler="pool")
        config = tiny_c4(**SMALL, **settings)
    else:
        config = small(**ABLATIONS[name])
    model = MaskRCNN(config, rng=0)
    images, targets = data()
    losses = model.train()(images, targets, rng=1)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    assert all(np.isfinite(v.item()) for v in losses.values()) and losses["loss_mask"].item() > 0
    sum(losses.values(), Tensor(np.zeros(()))).backward()
    for key in ("roi_heads.mask_predictor", "roi_heads.box_predictor"):
        grads = [p.grad for k, p in model.named_parameters() if k.startswith(key)]
        assert grads and all(g is not None and np.isfinite(g).all() for g in grads)
        assert any(np.abs(g).max() > 0 for g in grads)
    outputs = model.eval()(images)
    for out, image in zip(outputs, images, strict=True):
        D = len(out["boxes"])
        assert D > 0 and out["boxes"].shape == (D, 4) and out["labels"].shape == out["scores"].shape == (D,)
        assert out["masks"].shape == (D, 1, *image.shape[:2])
        assert np.isfinite(out["masks"]).all() and out["masks"].min() >= 0 and out["masks"].max() <= 1


def heads_and_features(config, seed=0):
    """The RoI heads of ``config`` and random P2..P5 features of one 64 x 64 image, with boxes on it."""
    rng = np.random.default_rng(seed)
    heads = RoIHeads.from_config(config, rng=seed)
    C = config.fpn_channels
    features = {str(i): rng.standard_normal((1, C, 16 >> i, 16 >> i)) for i in range(4)}
    boxes = np.array([[3.3, 5.0, 40.7, 30.2], [10.0, 12.5, 20.25, 50.0], [0.0, 0.0, 63.0, 63.0]])
    return heads, features, boxes


def mask_logits_of(heads, features, boxes):
    return heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(features, [boxes], [(64, 64)]))).data


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# --- (c) mask_loss="softmax" ---------------------------------------------------------------------------
def mask_loss_inputs(seed=0, K=4, M=6):
    rng = np.random.default_rng(seed)
    gt_masks = [(rng.random((2, 32, 32)) > 0.5).astype(np.uint8), (rng.random((1, 32, 32)) > 0.3).astype(np.uint8)]
    proposals = [np.array([[1.0, 2.0, 20.0, 25.0], [4.5, 0.0, 30.0, 31.0], [10.0, 10.0, 18.0, 22.0]]),
                 np.array([[0.0, 3.0, 12.0, 30.0]])]
    matched = [np.array([0, 1, 1]), np.array([0])]
    gt_labels = [np.array([3, 1]), np.array([2])]
    logits = rng.standard_normal((4, K, M, M))
    return logits, proposals, gt_masks, gt_labels, matched


def test_the_softmax_mask_loss_is_the_multinomial_cross_entropy_over_the_classes():
    logits, proposals, gt_masks, gt_labels, matched = mask_loss_inputs()
    ours = maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched, mask_loss="softmax").item()
    # directly: per pixel, a softmax over the K channels; the target t (RoIAlign of the mask) on the true
    # class, 1 - t on channel 0, the background; averaged over all P * M * M pixels
    t = np.concatenate([project_masks_on_boxes(m, p, i, 6) for m, p, i in zip(gt_masks, proposals, matched,
                                                                               strict=True)])  # (P, M, M)
    labels = np.concatenate([g[i] for g, i in zip(gt_labels, matched, strict=True)])
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # (P, K, M, M)
    rows = np.arange(len(labels))
    direct = -(t * log_p[rows, labels] + (1 - t) * log_p[rows, 0]).mean()
    assert abs(ours - direct) <= 1e-12 * abs(direct)
    # with binary targets it is the ordinary cross-entropy of a pixel's class index (label or background)
    hard = np.where(t >= 0.5, labels[:, None, None], 0)  # (P, M, M)
    onehot = np.moveaxis(np.eye(logits.shape[1])[hard], -1, 1)  # (P, M, M, K) -> (P, K, M, M)
    ce = -(onehot * log_p).sum(axis=1).mean()
    assert abs(cross_entropy_with_probs(logits, onehot).item() - ce) <= 1e-12 * ce
    # and it is not the default BCE on the true class's channel
    sig = maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched).item()
    bce = np.mean(np.logaddexp(0, logits[rows, labels]) - logits[rows, labels] * t)
    assert abs(sig - bce) <= 1e-12 * bce and abs(sig - ours) > 1e-3


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_softmax_mask_loss_gradients_equal_central_differences(reduction):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 2, 3))
    t = rng.random((3, 4, 2, 3))
    t /= t.sum(axis=1, keepdims=True)
    check_gradients(lambda a, b: cross_entropy_with_probs(a, b, reduction), [x, t], wrt=(0, 1))
    logits, proposals, gt_masks, gt_labels, matched = mask_loss_inputs(K=4, M=3)
    check_gradients(lambda a: maskrcnn_loss(a, proposals, gt_masks, gt_labels, matched, mask_loss="softmax"),
                    [logits], wrt=(0,))


@pytest.mark.parametrize("bad", [dict(mask_loss="bce"), dict(mask_loss="softmax", class_agnostic=True)])
def test_maskrcnn_loss_refuses_unknown_settings(bad):
    logits, proposals, gt_masks, gt_labels, matched = mask_loss_inputs()
    with pytest.raises(ValueError, match="mask_loss"):
        maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched, **bad)


def test_a_softmax_model_predicts_the_softmax_over_the_classes_at_the_predicted_class():
    heads, features, boxes = heads_and_features(small(mask_loss="softmax", box_score_thresh=0.0))
    out = heads.predict(features, [boxes], [(64, 64)])[0]
    logits = mask_logits_of(heads, features, out["boxes"])  # (D, K, 28, 28)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    D = len(out["boxes"])
    assert D > 0 and np.allclose(out["masks"][:, 0], p[np.arange(D), out["labels"]], rtol=1e-12, atol=0)
    assert not np.allclose(out["masks"][:, 0], sigmoid(logits[np.arange(D), out["labels"]]))


# --- (c) class_agnostic_masks ------------------------------------------------------------------------
def test_the_class_agnostic_predictor_has_one_channel_used_for_every_class():
    heads, features, boxes = heads_and_features(small(class_agnostic_masks=True, box_score_thresh=0.0))
    weight = heads.mask_predictor.mask_fcn_logits.weight
    assert weight.shape == (1, 64, 1, 1) and heads.mask_predictor.mask_fcn_logits.bias.shape == (1,)
    out = heads.predict(features, [boxes], [(64, 64)])[0]
    assert len(set(out["labels"].tolist())) > 1  # several classes, one mask channel
    logits = mask_logits_of(heads, features, out["boxes"])
    assert logits.shape == (len(out["boxes"]), 1, 28, 28)
    assert np.allclose(out["masks"], sigmoid(logits), rtol=1e-12, atol=0)
    # training: the one channel against every positive's target, whatever its class
    logits, proposals, gt_masks, gt_labels, matched = mask_loss_inputs()
    one = logits[:, :1]
    loss = maskrcnn_loss(one, proposals, gt_masks, gt_labels, matched, class_agnostic=True).item()
    labels = np.concatenate([g[i] for g, i in zip(gt_labels, matched, strict=True)])
    assert len(set(labels.tolist())) > 1  # positives of several classes
    relabelled = [np.full_like(g, 1) for g in gt_labels]
    assert loss == maskrcnn_loss(one, proposals, gt_masks, relabelled, matched, class_agnostic=True).item()
    specific = np.repeat(one, 4, axis=1)  # K identical channels: the class-specific loss is the same
    assert abs(loss - maskrcnn_loss(specific, proposals, gt_masks, gt_labels, matched).item()) <= 1e-14


# --- (c) roi_pooler -----------------------------------------------------------------------------------
def test_roi_warp_is_roi_align_of_the_boxes_rounded_to_the_feature_grid():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 16, 16))
    boxes = [np.array([[10.0, 10.0, 30.0, 30.0], [3.3, 5.1, 41.7, 30.2]]), np.array([[1.9, 0.4, 62.2, 17.6]])]
    for scale in (0.25, 0.5, 0.125):
        rounded = [np.sign(b * scale) * np.floor(np.abs(b * scale) + 0.5) / scale for b in boxes]
        ours = roi_warp(x, boxes, (5, 4), scale, 2).data
        assert np.array_equal(ours, roi_align(x, rounded, (5, 4), scale, 2).data)
        assert not np.allclose(ours, roi_align(x, boxes, (5, 4), scale, 2).data)  # the boxes are off the grid
    # half a feature pixel rounds away from zero, as RoIPool: 10 * 0.25 = 2.5 -> 3, 30 * 0.25 = 7.5 -> 8
    assert np.array_equal(roi_warp(x, [boxes[0][:1], boxes[1][:0]], 3, 0.25, 2).data,
                          roi_align(x, [np.array([[12.0, 12.0, 32.0, 32.0]]), boxes[1][:0]], 3, 0.25, 2).data)
    on_grid = [np.array([[8.0, 4.0, 40.0, 28.0]]), np.array([[0.0, 0.0, 64.0, 64.0]])]  # multiples of 4
    assert np.array_equal(roi_warp(x, on_grid, 4, 0.25, 2).data, roi_align(x, on_grid, 4, 0.25, 2).data)
    # the gradient is RoIAlign's, of the rounded boxes
    rounded = [np.sign(b * 0.25) * np.floor(np.abs(b * 0.25) + 0.5) / 0.25 for b in boxes]
    g = rng.standard_normal((3, 3, 5, 4))
    a, b = Tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    roi_warp(a, boxes, (5, 4), 0.25, 2).backward(g)
    roi_align(b, rounded, (5, 4), 0.25, 2).backward(g)
    assert np.array_equal(a.grad, b.grad) and np.abs(a.grad).max() > 0


def pyramid(rng, C=3):
    """P2..P5 of one 64 x 64 image, and boxes of every size (each level gets some)."""
    features = {str(i): rng.standard_normal((1, C, 16 >> i, 16 >> i)) for i in range(4)}
    boxes = np.array([[1.3, 2.0, 6.7, 9.2], [3.0, 3.5, 20.0, 25.0], [10.2, 4.0, 50.9, 44.0],
                      [0.0, 0.0, 63.0, 63.5], [30.5, 31.0, 42.0, 42.75], [5.0, 7.0, 60.0, 40.0]])
    return features, boxes


@pytest.mark.parametrize("roi_pooler", ["pool", "warp", "align"])
def test_the_pooler_pools_each_level_with_the_chosen_op(roi_pooler):
    features, boxes = pyramid(np.random.default_rng(0))
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], (3, 2), 2, canonical_scale=16, roi_pooler=roi_pooler)
    out = pooler(features, [boxes], [(64, 64)]).data
    scales, mapper = pooler.setup_scales(list(features.values()), [(64, 64)])
    levels = mapper([boxes])
    assert len(set(levels.tolist())) == 4  # every level is used
    op = {"pool": lambda f, b, s: roi_pool(f, b, (3, 2), s),
          "warp": lambda f, b, s: roi_warp(f, b, (3, 2), s, 2),
          "align": lambda f, b, s: roi_align(f, b, (3, 2), s, 2)}[roi_pooler]
    for r, level in enumerate(levels):
        expected = op(features[str(level)], [boxes[r : r + 1]], scales[level]).data[0]
        assert np.array_equal(out[r], expected)
    if roi_pooler != "align":
        assert not np.allclose(out, MultiScaleRoIAlign(["0", "1", "2", "3"], (3, 2), 2, canonical_scale=16)(
            features, [boxes], [(64, 64)]).data)
    one = MultiScaleRoIAlign(["0"], (3, 2), 2, roi_pooler=roi_pooler)  # one map (C4): no level mapping
    expected = op(features["0"], [boxes], 0.25).data
    assert np.array_equal(one({"0": features["0"]}, [boxes], [(64, 64)]).data, expected)


@pytest.mark.parametrize(("value", "error"), [(None, TypeError), (1, TypeError), ("roi_align", ValueError),
                                              (["pool"], TypeError)])
def test_the_pooler_refuses_an_unknown_op_by_name(value, error):
    with pytest.raises(error, match=r"roi_pooler must be one of \('align', 'warp', 'pool'\)"):
        MultiScaleRoIAlign(["0"], 3, 2, roi_pooler=value)


@pytest.mark.parametrize("roi_pooler", ["warp", "pool"])
def test_the_model_pools_boxes_and_masks_with_the_chosen_op(roi_pooler):
    heads = MaskRCNN(small(roi_pooler=roi_pooler)).roi_heads
    assert heads.box_roi_pool.roi_pooler == heads.mask_roi_pool.roi_pooler == roi_pooler
    assert MaskRCNN(small()).roi_heads.box_roi_pool.roi_pooler == "align"


# --- (c) mask_head="mlp" ------------------------------------------------------------------------------
def test_the_mlp_mask_head_shapes_and_keys():
    c = small(mask_head="mlp", mask_mlp_dim=24)
    heads = RoIHeads.from_config(c, rng=0)
    assert isinstance(heads.mask_head, MaskRCNNMLPHead) and isinstance(heads.mask_predictor, MaskRCNNMLPPredictor)
    shapes = {k: v.shape for k, v in heads.state_dict().items() if k.startswith("mask_")}
    assert shapes == {"mask_head.fc1.weight": (24, 64 * 14 * 14), "mask_head.fc1.bias": (24,),
                      "mask_head.fc2.weight": (24, 24), "mask_head.fc2.bias": (24,),
                      "mask_predictor.mask_fc_logits.weight": (4 * 28 * 28, 24),
                      "mask_predictor.mask_fc_logits.bias": (4 * 28 * 28,)}
    x = np.random.default_rng(0).standard_normal((5, 64, 14, 14))
    hidden = heads.mask_head(x)
    assert hidden.shape == (5, 24) and (hidden.data >= 0).all()
    assert heads.mask_predictor(hidden).shape == (5, 4, 28, 28)
    agnostic = RoIHeads.from_config(small(mask_head="mlp", mask_mlp_dim=24, class_agnostic_masks=True), rng=0)
    assert agnostic.mask_predictor(agnostic.mask_head(x)).shape == (5, 1, 28, 28)
    wider = RoIHeads.from_config(small(mask_head="mlp", mask_mlp_dim=8, mask_roi_output_size=7), rng=0)
    assert wider.mask_predictor(wider.mask_head(x[:, :, :7, :7])).shape == (5, 4, 14, 14)  # masks 2x the pooled size
    fcn = RoIHeads.from_config(small(), rng=0)
    assert isinstance(fcn.mask_head, MaskRCNNHeads) and isinstance(fcn.mask_predictor, MaskRCNNPredictor)


def test_the_mlp_mask_head_gradients_equal_central_differences():
    rng = np.random.default_rng(0)
    head = MaskRCNNMLPHead(2 * 3 * 3, 5, rng=1, dtype=np.float64)
    predictor = MaskRCNNMLPPredictor(5, 3, 2, rng=2, dtype=np.float64)
    for layer in (head.fc1, head.fc2):  # no unit near the ReLU's kink: central differences stay exact
        layer.bias.data[:] = 0.5 + rng.random(layer.bias.shape)

    def run(x):
        out = predictor(head(x))  # (R, 3, 2, 2)
        assert out.shape == (x.shape[0], 3, 2, 2)
        return out

    x = np.abs(rng.standard_normal((4, 2, 3, 3)))
    check_gradients(run, [x], wrt=(0,))
    # and with respect to a weight of each fc
    weights = rng.standard_normal((4, 3, 2, 2))
    for p in (head.fc1.weight, head.fc2.weight, predictor.mask_fc_logits.weight):
        head.zero_grad()
        predictor.zero_grad()
        run(Tensor(x)).backward(weights)
        analytic = p.grad.copy()

        def scalar(w, p=p):
            old = p.data.copy()
            p.data[...] = w
            value = float((predictor(head(x)).data * weights).sum())
            p.data[...] = old
            return value

        numeric = numerical_grad(scalar, [p.data.copy()], 0)
        assert np.abs(analytic - numeric).max() <= 1e-6 * np.abs(numeric).max()


# --- weights: state dicts, files, torchvision -------------------------------------------------------
def test_switches_that_keep_the_architecture_keep_the_weights():
    ref = MaskRCNN(small(), rng=3).state_dict()
    for settings in (dict(mask_loss="softmax"), dict(roi_pooler="warp"), dict(roi_pooler="pool")):
        sd = MaskRCNN(small(**settings), rng=3).state_dict()
        assert list(sd) == list(ref) and all(np.array_equal(sd[k], ref[k]) for k in sd)


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_the_state_dict_round_trips(name, tmp_path):
    config = small(**ABLATIONS[name])
    source, target = MaskRCNN(config, rng=0).eval(), MaskRCNN(config, rng=1).eval()
    images, _ = data(n=1)
    key = "roi_heads.mask_predictor." + ("mask_fc_logits.weight" if "mlp" in name else "mask_fcn_logits.weight")
    assert not np.array_equal(source.state_dict()[key], target.state_dict()[key])
    assert list(source.state_dict()) == list(target.state_dict())
    target.load_state_dict(source.state_dict())
    expected = source(images)[0]
    assert all(np.array_equal(v, expected[k]) for k, v in target(images)[0].items())
    save_model(source, tmp_path / "model.safetensors")
    loaded = load_model(tmp_path / "model.safetensors")
    assert loaded.config == config
    assert all(np.array_equal(v, expected[k]) for k, v in loaded(images)[0].items())
    default = MaskRCNN(small(), rng=0)
    if "mlp" in name or "agnostic" in name:  # other keys or shapes: a default model cannot take them
        with pytest.raises(ValueError, match="load_state_dict"):
            default.load_state_dict(source.state_dict())


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_an_ablated_model_does_not_convert_to_torchvision(name):
    model = MaskRCNN(small(**ABLATIONS[name]), rng=0)
    switch = next(k for k in ABLATIONS[name] if k != "mask_mlp_dim")

    class Target:  # never reached
        def load_state_dict(self, *args, **kwargs):
            raise AssertionError("the weights were copied")

    for call in (lambda: export_to_torchvision(model, Target()), lambda: state_dict_to_torch(model)):
        with pytest.raises(ValueError, match=f"{switch}=.*torchvision"):
            call()
    sd = MaskRCNN(small(), rng=1).state_dict()  # torchvision's keys and shapes
    if switch in ("mask_head", "class_agnostic_masks"):  # its weights are not torchvision's: refused by name
        with pytest.raises(ValueError, match=f"load_torchvision_state_dict: this model has .*{switch}="):
            load_torchvision_state_dict(model, sd)
    else:  # torchvision's weights, another pooler or loss: they load (to compare the ablation on them)
        load_torchvision_state_dict(model, sd)
        assert all(np.array_equal(v, sd[k]) for k, v in model.state_dict().items())
    check_torchvision_settings(MaskRCNN(small(), rng=0), "export")  # the default converts
