"""``mrcnn-np verify``: run torchvision's Mask R-CNN and ours on the same photograph with the same
random weights, and tabulate how closely every stage agrees.

Needs the ``reference`` extra (torch + torchvision); :func:`verify` raises ImportError with the
install command when it is missing. The torchvision model is the fine-tuning recipe of
``maskrcnn_resnet50_fpn`` (ResNet-50-FPN, FrozenBatchNorm2d, 3 trainable layers) with seeded
random weights; the frozen-BN statistics are calibrated on the image and then randomised, so
that no normalisation is the identity and activations stay the size a trained network's are.

Stages compared, each library running its own chain end to end:
transform (the padded batch), backbone levels P2..P6, RPN proposals, the box head's outputs on
the same proposals (torchvision's), the final detections (boxes, scores, labels) and the masks
pasted into the image. Proposals and detections are paired by box before comparing, since a
float32 run may order two results with near-equal scores the other way round; the table says
how many rows that moved.

The same module builds torchvision twins for the reference tests and benchmarks:
:func:`torchvision_model` (config -> torchvision's ``MaskRCNN`` of exactly our architecture),
:func:`twin_pair` (config -> both models with the same calibrated weights), and
:func:`torchvision_optimizer` / :func:`torchvision_train_step`, torch.optim's twins of
:func:`mrcnn_np.train.make_optimizer` and :func:`mrcnn_np.train.train_step`.
"""

from __future__ import annotations

import time

import numpy as np

from .backend import to_numpy
from .model.transform import as_chw_float


def _torch():
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError as e:
        raise ImportError("mrcnn-np verify compares with torchvision, which is not installed; install the "
                          "reference extra:  pip install 'mrcnn-np[reference]'") from e
    return torch


def sample_image(name: str = "grace_hopper.jpg") -> np.ndarray:
    """A photograph matplotlib ships, as (H, W, 3) float64 in [0, 1]."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg

    img = mpimg.imread(cbook.get_sample_data(name, asfileobj=False))[..., :3].astype(np.float64)
    return img / 255 if img.max() > 1 else img


def calibrate_norms(model, run, seed: int = 1) -> None:
    """Set each (frozen) batch norm's statistics to its input's per-channel mean and variance in
    one forward pass ``run()``, then perturb them and the affine terms randomly."""
    torch = _torch()
    from torchvision.ops.misc import FrozenBatchNorm2d

    g = torch.Generator().manual_seed(seed)
    handles = {}

    def set_stats(module, inputs):
        x = inputs[0].detach()
        C = x.shape[1]
        with torch.no_grad():
            module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
            module.running_var.copy_(x.var(dim=(0, 2, 3)) * (torch.rand(C, generator=g, dtype=x.dtype) + 0.5))
            module.weight.copy_(torch.rand(C, generator=g, dtype=x.dtype) + 0.5)
            module.bias.copy_(torch.randn(C, generator=g, dtype=x.dtype) * 0.1)
        handles.pop(module).remove()

    for m in model.modules():
        if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
            handles[m] = m.register_forward_pre_hook(set_stats)
    with torch.no_grad():
        run()
    for h in handles.values():
        h.remove()


def to_torch(images, dtype=np.float64) -> list:
    """Images as our models take them ((H, W, 3) or (3, H, W), float in [0, 1] or uint8) ->
    torchvision's (3, H, W) tensors in [0, 1] of ``dtype``."""
    torch = _torch()
    dtype = np.dtype(dtype).type
    return [torch.from_numpy(np.ascontiguousarray(as_chw_float(to_numpy(im), dtype))) for im in images]


def targets_to_torch(targets) -> list:
    """Training targets ``{"boxes", "labels", "masks", ...}`` -> the same dicts of tensors
    (entries that are not arrays, such as ``image_id``, are left out)."""
    torch = _torch()
    return [{k: torch.from_numpy(np.asarray(to_numpy(v))) for k, v in t.items() if hasattr(v, "shape")}
            for t in targets]


def _torchvision_resnet(config):
    """torchvision's ResNet (Bottleneck) body with ``config``'s blocks per stage, base width and norm layer."""
    torch = _torch()
    from torchvision.models import resnet
    from torchvision.ops.misc import FrozenBatchNorm2d

    norm = FrozenBatchNorm2d if config.frozen_batch_norm else torch.nn.BatchNorm2d
    if config.backbone_layers is None:
        body = getattr(resnet, config.backbone)(weights=None, norm_layer=norm)
    else:
        body = resnet.ResNet(resnet.Bottleneck, list(config.backbone_layers), norm_layer=norm)
    w = config.backbone_width
    if w != 64:  # torchvision hard-codes 64: rebuild the stem and the four stages (avgpool, fc: unused)
        body.inplanes = w
        body.conv1 = torch.nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        body.bn1 = norm(w)
        for i in range(4):
            blocks = len(getattr(body, f"layer{i + 1}"))
            setattr(body, f"layer{i + 1}", body._make_layer(resnet.Bottleneck, w * 2**i, blocks, 1 if i == 0 else 2))
        for m in body.modules():  # ResNet's init for the new convolutions
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return body


def torchvision_model(config, seed: int = 0):
    """torchvision's ``MaskRCNN`` with exactly the architecture of our ``MaskRCNN(config)``: the same
    state-dict keys and shapes, the same parameters frozen (``_resnet_fpn_extractor``), every
    transform / RPN / RoI-head setting passed through; torchvision's random initialisation after
    ``torch.manual_seed(seed)``, in the config's dtype.

    Modules are built in the order torchvision's own constructors build them, so for the default
    config the weights are those of ``MaskRCNN(resnet_fpn_backbone("resnet50", weights=None), ...)``.
    """
    torch = _torch()
    from torchvision.models.detection import MaskRCNN as TVMaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, RPNHead, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

    c = config
    torch.manual_seed(seed)
    backbone = _resnet_fpn_extractor(_torchvision_resnet(c), c.trainable_backbone_layers)
    if c.fpn_channels != backbone.out_channels:  # the extractor always builds a 256-channel FPN
        in_channels = [c.backbone_width * 4 * 2**i for i in range(4)]  # C2..C5
        backbone.fpn = FeaturePyramidNetwork(in_channels, c.fpn_channels, extra_blocks=LastLevelMaxPool())
        backbone.out_channels = c.fpn_channels
    anchors = AnchorGenerator(c.anchor_sizes, c.aspect_ratios)
    # the heads in the order MaskRCNN and FasterRCNN create their defaults: the same random draws
    mask_head = MaskRCNNHeads(c.fpn_channels, list(c.mask_layers), 1)
    mask_predictor = MaskRCNNPredictor(c.mask_layers[-1], c.mask_dim_reduced, c.num_classes)
    rpn_head = RPNHead(c.fpn_channels, anchors.num_anchors_per_location()[0])
    box_head = TwoMLPHead(c.fpn_channels * 7 * 7, c.representation_size)
    box_predictor = FastRCNNPredictor(c.representation_size, c.num_classes)
    model = TVMaskRCNN(
        backbone, None, min_size=c.min_size, max_size=c.max_size, image_mean=list(c.image_mean),
        image_std=list(c.image_std), rpn_anchor_generator=anchors, rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=c.rpn_pre_nms_top_n["training"], rpn_pre_nms_top_n_test=c.rpn_pre_nms_top_n["testing"],
        rpn_post_nms_top_n_train=c.rpn_post_nms_top_n["training"],
        rpn_post_nms_top_n_test=c.rpn_post_nms_top_n["testing"], rpn_nms_thresh=c.rpn_nms_thresh,
        rpn_fg_iou_thresh=c.rpn_fg_iou_thresh, rpn_bg_iou_thresh=c.rpn_bg_iou_thresh,
        rpn_batch_size_per_image=c.rpn_batch_size_per_image, rpn_positive_fraction=c.rpn_positive_fraction,
        rpn_score_thresh=c.rpn_score_thresh, box_head=box_head, box_predictor=box_predictor,
        box_score_thresh=c.box_score_thresh, box_nms_thresh=c.box_nms_thresh,
        box_detections_per_img=c.box_detections_per_img, box_fg_iou_thresh=c.box_fg_iou_thresh,
        box_bg_iou_thresh=c.box_bg_iou_thresh, box_batch_size_per_image=c.box_batch_size_per_image,
        box_positive_fraction=c.box_positive_fraction, bbox_reg_weights=tuple(c.bbox_reg_weights),
        mask_head=mask_head, mask_predictor=mask_predictor,
    )
    return model.to(torch.float64 if np.dtype(c.dtype) == np.float64 else torch.float32)


def twin_pair(config, seed: int = 0, image=None):
    """(:func:`torchvision_model`, our ``MaskRCNN(config)``) with identical weights, in eval mode.
    The norm statistics are calibrated on ``image`` (default :func:`sample_image`) with
    :func:`calibrate_norms` and then copied into ours with the other weights."""
    from .convert import load_torchvision_state_dict
    from .model.mask_rcnn import MaskRCNN

    tv = torchvision_model(config, seed).eval()
    x = to_torch([sample_image() if image is None else image], config.dtype)
    calibrate_norms(tv, lambda: tv.backbone(tv.transform(x)[0].tensors), seed + 1)
    ours = MaskRCNN(config)
    load_torchvision_state_dict(ours, tv)
    return tv, ours.eval()


def build_pair(num_classes: int = 91, dtype=np.float64, seed: int = 0, min_size: int = 800, max_size: int = 1333,
               image=None):
    """(torchvision model, our model) of the default ResNet-50-FPN recipe with the same random
    weights, in eval mode (:func:`twin_pair` of ``MaskRCNNConfig`` with these settings)."""
    from .config import MaskRCNNConfig

    return twin_pair(MaskRCNNConfig(num_classes=num_classes, dtype=dtype, min_size=min_size, max_size=max_size),
                     seed, image)


def torchvision_optimizer(model, recipe):
    """torch.optim's twin of :func:`mrcnn_np.train.make_optimizer`: ``torch.optim.SGD`` over the
    parameters that require a gradient, and the warm-up ``LinearLR`` chained with ``MultiStepLR``
    (``ChainedScheduler``): torchvision's ``references/detection`` recipe counted in iterations.
    Returns (SGD, scheduler)."""
    torch = _torch()
    schedulers = torch.optim.lr_scheduler
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    chain = []
    if recipe.warmup_iters:  # (LinearLR over 0 iterations would keep start_factor for ever)
        chain.append(schedulers.LinearLR(optimizer, recipe.warmup_factor, 1.0, recipe.warmup_iters))
    chain.append(schedulers.MultiStepLR(optimizer, list(recipe.milestones), recipe.gamma))
    return optimizer, schedulers.ChainedScheduler(chain)


def torchvision_train_step(model, optimizer, images: list, targets: list) -> dict:
    """torchvision's twin of :func:`mrcnn_np.train.train_step`: the summed losses, backward, one
    optimiser step. ``images`` and ``targets`` as torch tensors (:func:`to_torch`,
    :func:`targets_to_torch`); returns the losses as floats and ``"loss"``, their sum."""
    optimizer.zero_grad()
    losses = model(images, targets)
    total = sum(losses.values())
    total.backward()
    optimizer.step()
    return {"loss": float(total.item()), **{k: float(v.item()) for k, v in losses.items()}}


def float64_labels(tv_rpn) -> None:
    """Torchvision builds the RPN labels as float32 whatever the model's dtype, and torch then
    evaluates the BCE in float32: a float64 model's objectness loss has float32 precision. Ours
    keeps the model's dtype; to compare float64 arithmetic, make torchvision's RPN ``tv_rpn``
    give labels in the anchors' dtype (in place)."""
    assign = tv_rpn.assign_targets_to_anchors

    def assign_in_anchor_dtype(anchors, targets):
        labels, matched = assign(anchors, targets)
        return [lab.to(anchors[0].dtype) for lab in labels], [m.to(anchors[0].dtype) for m in matched]

    tv_rpn.assign_targets_to_anchors = assign_in_anchor_dtype


def replay_sampling(tv, ours) -> None:
    """Make torchvision's two samplers return the anchors and RoIs our last training step drew
    (``ours.rpn.last_sampled``, ``ours.roi_heads.last_sampled``), and its RPN labels float64-exact
    (:func:`float64_labels`); call after each of our steps, before torchvision's."""
    torch = _torch()
    float64_labels(tv.rpn)
    rpn_pos, rpn_neg = ours.rpn.last_sampled
    roi_pos, roi_neg = ours.roi_heads.last_sampled
    tv.rpn.fg_bg_sampler = lambda _l: ([torch.from_numpy(p) for p in rpn_pos], [torch.from_numpy(n) for n in rpn_neg])
    tv.roi_heads.fg_bg_sampler = lambda _l: ([torch.from_numpy(p.astype(np.uint8)) for p in roi_pos],
                                             [torch.from_numpy(n.astype(np.uint8)) for n in roi_neg])


def pair_rows(ours_boxes, ref_boxes):
    """For each reference box, the index of our closest box (max coordinate difference), and how
    many rows are not where the reference has them. float32 runs may swap rows whose scores agree
    to ~6 digits; pairing by box compares like with like."""
    ours_boxes, ref_boxes = np.asarray(to_numpy(ours_boxes), np.float64), np.asarray(ref_boxes, np.float64)
    if len(ours_boxes) != len(ref_boxes) or len(ref_boxes) == 0:
        return None, 0
    dist = np.abs(ref_boxes[:, None, :] - ours_boxes[None, :, :]).max(axis=2)  # (R, R)
    order = dist.argmin(axis=1)
    if len(np.unique(order)) != len(order):  # not a one-to-one pairing: keep the given order
        return None, 0
    return order, int((order != np.arange(len(order))).sum())


def _errors(ours, ref):
    ours, ref = np.asarray(to_numpy(ours), np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return None, None
    if ours.size == 0:
        return 0.0, 0.0
    diff = float(np.abs(ours - ref).max())
    scale = float(np.abs(ref).max())
    return diff, diff / scale if scale else diff


def verify(dtype=np.float64, seed: int = 0, min_size: int = 800, max_size: int = 1333, image=None) -> list[dict]:
    """Rows ``{"stage", "shape", "max_abs", "max_rel", "note"}`` for every compared stage."""
    torch = _torch()
    from torchvision.models.detection.image_list import ImageList

    from .autograd import no_grad

    image = sample_image() if image is None else image
    tv, ours = build_pair(dtype=dtype, seed=seed, min_size=min_size, max_size=max_size, image=image)
    x = to_torch([image], dtype)[0]
    rows = []

    def add(stage, o, r, note=""):
        r = r.detach().cpu().numpy() if hasattr(r, "detach") else np.asarray(r)
        abs_err, rel_err = _errors(o, r)
        rows.append({"stage": stage, "shape": tuple(r.shape), "max_abs": abs_err, "max_rel": rel_err,
                     "note": note if abs_err is not None else f"shape {tuple(np.shape(o))} != {tuple(r.shape)}"})

    with torch.no_grad(), no_grad():
        t0 = time.perf_counter()
        batch, _ = ours.transform([image], dtype=np.dtype(dtype).type)
        tv_batch, _ = tv.transform([x])
        add("transform: padded batch", batch.tensors, tv_batch.tensors)
        feats = ours.backbone(batch.tensors)
        tv_feats = tv.backbone(tv_batch.tensors)
        for k, name in zip(feats, ["P2", "P3", "P4", "P5", "P6"], strict=True):
            add(f"backbone + FPN: {name}", feats[k].data, tv_feats[k])
        proposals, _ = ours.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, feats)
        tv_props, _ = tv.rpn(ImageList(tv_batch.tensors, tv_batch.image_sizes), tv_feats)
        order, moved = pair_rows(proposals[0], tv_props[0].numpy())
        paired = proposals[0] if order is None else proposals[0][order]
        add("RPN: proposals", paired, tv_props[0],
            f"{len(proposals[0])} proposals" + (f", {moved} rows reordered (near-equal scores)" if moved else ""))
        props = [p.numpy() for p in tv_props]  # the same proposals into both box heads
        rh, trh = ours.roi_heads, tv.roi_heads
        logits, deltas = rh.box_predictor(rh.box_head(rh.box_roi_pool(feats, props, batch.image_sizes)))
        t_logits, t_deltas = trh.box_predictor(trh.box_head(trh.box_roi_pool(tv_feats, tv_props,
                                                                             tv_batch.image_sizes)))
        add("box head: class logits", logits.data, t_logits)
        add("box head: box deltas", deltas.data, t_deltas)
        out = ours([image])[0]
        ref = tv([x])[0]
        order, moved = pair_rows(out["boxes"], ref["boxes"].numpy())
        if order is not None:
            out = {k: v[order] for k, v in out.items()}
        same_labels = len(out["labels"]) == len(ref["labels"]) and bool(np.array_equal(out["labels"],
                                                                                      ref["labels"].numpy()))
        note = f"{len(out['boxes'])} detections, labels {'identical' if same_labels else 'DIFFER'}"
        note += f", {moved} rows reordered (near-equal scores)" if moved else ""
        add("detections: boxes", out["boxes"], ref["boxes"], note)
        add("detections: scores", out["scores"], ref["scores"])
        add("masks (pasted, probabilities)", out["masks"], ref["masks"])
        rows.append({"stage": "wall time (s)", "shape": (), "max_abs": None, "max_rel": None,
                     "note": f"{time.perf_counter() - t0:.1f} for both libraries"})
    return rows


def format_table(rows: list[dict], dtype) -> str:
    lines = [f"mrcnn_np vs torchvision, {np.dtype(dtype).name}, same random weights",
             f"{'stage':34s} {'shape':>22s} {'max abs':>10s} {'max rel':>10s}  note"]
    for r in rows:
        num = (f"{r['max_abs']:10.2e} {r['max_rel']:10.2e}" if r["max_abs"] is not None else f"{'-':>10s} {'-':>10s}")
        lines.append(f"{r['stage']:34s} {str(r['shape']):>22s} {num}  {r['note']}")
    return "\n".join(lines)
