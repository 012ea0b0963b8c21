"""The model's API has no traps: inference never records the tape, training draws are fresh
unless an ``rng`` asks to repeat them, and configuration reaches every stage by keyword."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np import Tensor, autograd
from mrcnn_np.config import MaskRCNNConfig, config_from_dict, config_to_dict, tiny
from mrcnn_np.data.shapes import random_image
from mrcnn_np.model.anchors import AnchorGenerator
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.roi_heads import RoIHeads
from mrcnn_np.model.rpn import RegionProposalNetwork, RPNHead
from mrcnn_np.model.transform import GeneralizedRCNNTransform
from tests.unit.test_mask_rcnn_small import batch


@pytest.fixture(scope="module")
def model():
    return MaskRCNN(tiny(), rng=0)


@pytest.fixture(scope="module")
def data():
    return batch(np.random.default_rng(3))


def record_grad_mode(monkeypatch, module, log):
    """Make ``module.forward`` note whether the tape is on each time it runs."""
    forward = module.forward

    def noting(*args, **kwargs):
        log.append(autograd.is_grad_enabled())
        return forward(*args, **kwargs)

    monkeypatch.setattr(module, "forward", noting)


# --- inference is gradient-free by construction ------------------------------------------------
def test_predict_runs_without_the_tape_and_returns_plain_arrays(model, monkeypatch):
    log = []
    for stage in (model.backbone, model.rpn.head, model.roi_heads.box_head, model.roi_heads.mask_head):
        record_grad_mode(monkeypatch, stage, log)
    model.eval()
    image = random_image(np.random.default_rng(1), 90, 130)[0]
    out = model([image])[0]
    assert log == [False] * 4, "a stage ran with the tape on"
    assert all(type(v) is np.ndarray for v in out.values())
    assert autograd.is_grad_enabled(), "predict must restore the caller's mode"


def test_stage_predicts_run_without_the_tape(model, monkeypatch):
    model.eval()
    batch_, _ = model.transform([random_image(np.random.default_rng(1), 90, 130)[0]])
    features = model.backbone(batch_.tensors)  # a Module's forward records, outside no_grad
    log = []
    record_grad_mode(monkeypatch, model.rpn.head, log)
    record_grad_mode(monkeypatch, model.roi_heads.box_head, log)
    proposals, _ = model.rpn.predict(batch_.tensors.shape[-2:], batch_.image_sizes, features)
    model.roi_heads.predict(features, proposals, batch_.image_sizes)
    assert log == [False, False]


def test_gradients_through_the_stages_as_documented(model):
    """The module docstring's recipe for gradients of a class logit with respect to the image."""
    model.eval()
    batch_, _ = model.transform([random_image(np.random.default_rng(1), 90, 130)[0]])
    x = Tensor(batch_.tensors, requires_grad=True)
    features = model.backbone(x)
    proposals = [np.array([[10.0, 10.0, 60.0, 50.0], [30.0, 5.0, 90.0, 80.0]], np.float32)]
    heads = model.roi_heads
    class_logits, _ = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, proposals,
                                                                          batch_.image_sizes)))
    class_logits[:, 1].sum().backward()
    assert x.grad.shape == batch_.tensors.shape and np.abs(x.grad).max() > 0


def test_the_transform_gives_the_original_sizes():
    transform = GeneralizedRCNNTransform.from_config(tiny())
    images = [np.zeros((90, 130, 3), np.float32), np.zeros((3, 40, 50), np.float32)]
    batch_, _ = transform(images)
    assert batch_.original_sizes == [(90, 130), (40, 50)]
    assert batch_.image_sizes == [(256, 369), (256, 320)]


# --- randomness is explicit and fresh ---------------------------------------------------------
def test_calls_without_an_rng_sample_afresh(model, data):
    model.train()
    images, targets = data
    _, first = model.loss(images, targets, return_sampled=True)
    _, second = model(images, targets, return_sampled=True)
    for stage in ("rpn", "roi_heads"):
        pos_a, neg_a = first[stage]
        pos_b, neg_b = second[stage]
        assert any(not np.array_equal(a, b) for a, b in zip(neg_a + pos_a, neg_b + pos_b, strict=True)), stage


def test_the_same_explicit_rng_gives_the_same_losses(model, data):
    model.train()
    images, targets = data
    a = model(images, targets, rng=7)
    b = model(images, targets, rng=7)
    assert {k: v.item() for k, v in a.items()} == {k: v.item() for k, v in b.items()}


def test_manual_seed_and_construction_seed_reproduce_the_draws(data):
    images, targets = data
    draws = []
    for _ in range(2):
        m = MaskRCNN(tiny(), rng=5).train()
        draws.append(m.loss(images, targets, return_sampled=True)[1])
        m.manual_seed(11)
        draws.append(m.loss(images, targets, return_sampled=True)[1])
    for a, b in [(draws[0], draws[2]), (draws[1], draws[3])]:
        for stage in ("rpn", "roi_heads"):
            for x, y in zip(a[stage][0] + a[stage][1], b[stage][0] + b[stage][1], strict=True):
                np.testing.assert_array_equal(x, y)


def test_replaying_a_draw_gives_the_same_losses(model, data):
    model.train()
    images, targets = data
    losses, sampled = model.loss(images, targets, rng=np.random.default_rng(2), return_sampled=True)
    again = model.loss(images, targets, sampled=sampled)
    assert {k: v.item() for k, v in losses.items()} == {k: v.item() for k, v in again.items()}


def test_stage_losses_need_an_rng_or_a_sample(model, data):
    model.train()
    images, targets = data
    batch_, targets_ = model.transform(images, targets)
    features = model.backbone(batch_.tensors)
    gt = [t["boxes"] for t in targets_]
    with pytest.raises(ValueError, match="pass rng="):
        model.rpn.loss(batch_.tensors.shape[-2:], batch_.image_sizes, features, gt)
    proposals, _, _, _ = model.rpn.loss(batch_.tensors.shape[-2:], batch_.image_sizes, features, gt, rng=0)
    with pytest.raises(ValueError, match="pass rng="):
        model.roi_heads.loss(features, proposals, batch_.image_sizes, targets_)
    assert not hasattr(model.rpn, "last_sampled") and not hasattr(model.roi_heads, "last_sampled")


# --- configuration by keyword, from one place -----------------------------------------------
def test_stage_constructors_are_keyword_only():
    anchors = AnchorGenerator.from_config(tiny())
    head = RPNHead(64, 3)
    c = tiny()
    settings = dict(fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
                    pre_nms_top_n=c.rpn_pre_nms_top_n, post_nms_top_n=c.rpn_post_nms_top_n, nms_thresh=0.7,
                    score_thresh=0.0)
    with pytest.raises(TypeError):
        RegionProposalNetwork(anchors, head, **settings)
    with pytest.raises(TypeError):
        AnchorGenerator(c.anchor_sizes, c.aspect_ratios)
    with pytest.raises(TypeError):  # no setting has a default of its own: the config's is the one
        RegionProposalNetwork(anchor_generator=anchors, head=head)
    rpn = RegionProposalNetwork(anchor_generator=anchors, head=head, **settings)
    assert rpn.pre_nms_top_n == c.rpn_pre_nms_top_n


def test_every_setting_reaches_its_stage():
    c = tiny(rpn_pre_nms_top_n={"training": 11, "testing": 7}, rpn_post_nms_top_n={"training": 5, "testing": 3},
             rpn_nms_thresh=0.6, box_nms_thresh=0.4, box_detections_per_img=9, box_roi_output_size=5,
             mask_roi_output_size=10, roi_sampling_ratio=3, roi_featmap_names=("0", "1", "2"), min_size=200)
    m = MaskRCNN(c)
    assert (m.rpn.pre_nms_top_n, m.rpn.post_nms_top_n) == (c.rpn_pre_nms_top_n, c.rpn_post_nms_top_n)
    assert (m.rpn.nms_thresh, m.roi_heads.nms_thresh, m.roi_heads.detections_per_img) == (0.6, 0.4, 9)
    assert m.transform.min_size == 200
    for pool, size in ((m.roi_heads.box_roi_pool, 5), (m.roi_heads.mask_roi_pool, 10)):
        assert pool.output_size == (size, size) and pool.sampling_ratio == 3 and pool.featmap_names == ["0", "1", "2"]
    assert m.roi_heads.box_head.fc6.weight.shape == (c.representation_size, c.fpn_channels * 25)
    out = m.eval()([random_image(np.random.default_rng(1), 90, 130)[0]])[0]
    assert out["masks"].shape[1:] == (1, 90, 130) and len(out["boxes"]) <= 9


def test_from_config_overrides_replace_parts_and_settings():
    c = tiny()
    heads = RoIHeads.from_config(c, score_thresh=0.5, box_head=None)
    assert heads.score_thresh == 0.5 and heads.box_head is None and heads.box_predictor is not None
    with pytest.raises(TypeError):
        RegionProposalNetwork.from_config(c, nms_treshold=0.5)  # a typo is an error


def test_config_defaults_are_written_once_and_old_configs_load():
    d = config_to_dict(MaskRCNNConfig())
    for new in ("roi_featmap_names", "box_roi_output_size", "mask_roi_output_size", "roi_sampling_ratio"):
        d.pop(new)  # a metrics.json or checkpoint written before the poolers were settings
    old = config_from_dict(d)
    assert old == MaskRCNNConfig()
    assert config_from_dict(config_to_dict(tiny())) == tiny()


@pytest.mark.parametrize("overrides", [{}, {"mask_head": "mlp", "mask_mlp_dim": 16}, {"mask_branch": False}])
def test_an_image_without_proposals_gives_no_detections(monkeypatch, overrides):
    """The RPN may keep no box (all removed as too small, or a diverged model's NaN boxes): the heads
    then see zero RoIs, and every output has zero rows instead of an error."""
    import numpy as np

    from mrcnn_np.config import tiny
    from mrcnn_np.model.mask_rcnn import MaskRCNN

    model = MaskRCNN(tiny(min_size=64, max_size=64, **overrides), rng=0).eval()
    monkeypatch.setattr(model.rpn, "predict", lambda shape, sizes, features: (
        [np.zeros((0, 4), dtype=np.float32) for _ in sizes], None))
    out = model.predict([np.zeros((64, 64, 3), dtype=np.float32)] * 2)
    for o in out:
        assert o["boxes"].shape == (0, 4) and o["labels"].shape == (0,) and o["scores"].shape == (0,)
        if model.config.mask_branch:
            assert o["masks"].shape == (0, 1, 64, 64)
