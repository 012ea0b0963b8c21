"""The second stage: classify and refine every proposal, and predict its mask.

In:  FPN features, proposals per image (P_i, 4), the images' sizes.
Out: inference -- per image ``boxes (D, 4)``, ``labels (D,)``, ``scores (D,)``, and
     ``masks (D, 1, 28, 28)`` probabilities of the predicted class;
     training -- ``loss_classifier``, ``loss_box_reg``, ``loss_mask``.
     Without the mask branch (Faster R-CNN, ``config.mask_branch=False``): no masks, no loss_mask.

    box branch   MultiScaleRoIAlign 7x7 -> flatten -> fc6, fc7 (1024, ReLU) ->
                 K class logits + 4K class-specific deltas (BoxCoder weights 10, 10, 5, 5);
                 torchvision's v2: 4 x (3x3 conv 256 + BatchNorm + ReLU) -> flatten -> fc 1024 + ReLU
    postprocess  softmax; decode per class; clip; drop background, scores <= 0.05 and boxes
                 under 0.01 px; NMS 0.5 per class; keep the 100 best
    mask branch  MultiScaleRoIAlign 14x14 -> 4 x (3x3 conv 256 + ReLU) -> 2x2 transposed conv
                 (stride 2) + ReLU -> 1x1 conv to K masks of 28x28 (a small FCN, not an MLP);
                 torchvision's v2: BatchNorm after each of the 4 convs
    training     ground-truth boxes added to the proposals; matched at IoU 0.5; 512 sampled
                 per image, 25% positive; cross-entropy + smooth L1 (beta 1/9, summed, divided
                 by the number sampled) on the true class's deltas; mask targets = RoIAlign of
                 each positive's ground-truth mask into 28x28; BCE on the true class's mask only
    ablations    (the paper's Table 2, settings of the config; torchvision has none of them)
                 mask_loss="softmax": a softmax over the K mask channels per pixel and a
                 multinomial cross-entropy instead of the BCE; class_agnostic_masks: a 1-channel
                 mask predictor whose mask serves every class; roi_pooler="warp" | "pool":
                 RoIWarp or RoIPool in both poolers; mask_head="mlp": the pooled 14x14 RoI
                 flattened -> fc, fc (1024, ReLU) -> fc to K x 28 x 28 (MaskRCNNMLPHead,
                 MaskRCNNMLPPredictor)

He et al., "Mask R-CNN" (2017), sec. 3 and fig. 4 (right); torchvision
``models/detection/roi_heads.py``, ``faster_rcnn.py`` (``TwoMLPHead``,
``FastRCNNConvFCHead``, ``FastRCNNPredictor``), ``mask_rcnn.py`` (``MaskRCNNHeads``, ``MaskRCNNPredictor``).
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..backend import as_array, get_array_module
from ..checks import check_bool
from ..config import MASK_LOSSES, as_config
from ..nn import functional as F
from ..nn.fused import conv_norm
from ..nn.losses import cross_entropy_with_probs
from ..ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from ..ops.box_coder import BoxCoder
from ..ops.matcher import Matcher, labels_of_matches
from ..ops.poolers import MultiScaleRoIAlign
from ..ops.roi_align import roi_align
from ..ops.sampler import BalancedPositiveNegativeSampler


class TwoMLPHead(nn.Module):
    """(R, C, 7, 7) -> (R, representation_size): flatten, fc6 + ReLU, fc7 + ReLU."""

    def __init__(self, in_channels: int, representation_size: int, *, rng=None, dtype=np.float32):
        super().__init__()
        rng = nn.init.make_rng(rng)
        self.fc6 = nn.Linear(in_channels, representation_size, rng=rng, dtype=dtype)
        self.fc7 = nn.Linear(representation_size, representation_size, rng=rng, dtype=dtype)

    def forward(self, x):
        x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))  # (R, C, 7, 7) -> (R, C*49); R may be 0
        return F.relu(self.fc7(F.relu(self.fc6(x))))


class FastRCNNConvFCHead(nn.Sequential):
    """torchvision's v2 box head: (R, C, 7, 7) -> (R, fc_layers[-1]). 3x3 conv (+ norm) + ReLU blocks of
    ``conv_layers`` widths, flatten, then fc + ReLU of ``fc_layers`` widths. Keys ``i.0.weight`` (conv),
    ``i.1.*`` (norm), ``{len(conv_layers) + 1}.weight`` (the first fc, after the Flatten)."""

    def __init__(self, input_size: tuple, conv_layers, fc_layers, norm_layer=None, *, rng=None, dtype=np.float32):
        rng = nn.init.make_rng(rng)
        in_channels, height, width = input_size
        blocks = [conv_norm_relu(c_in, c_out, 1, norm_layer, rng=rng, dtype=dtype)
                  for c_in, c_out in zip((in_channels, *conv_layers), conv_layers, strict=False)]
        blocks.append(nn.Flatten())
        features = (conv_layers[-1] if conv_layers else in_channels) * height * width
        for width_out in fc_layers:
            blocks += [nn.Linear(features, width_out, rng=rng, dtype=dtype), nn.ReLU()]
            features = width_out
        super().__init__(*blocks)
        self.num_convs = len(conv_layers)

    def forward(self, x):
        blocks = list(self)
        for block in blocks[: self.num_convs]:  # conv (+ norm) + ReLU: one folded conv at inference
            x = conv_norm(block[0], block[1] if len(block) > 2 else None, x, relu=True)
        for layer in blocks[self.num_convs :]:  # Flatten (R, C, 7, 7) -> (R, C*49), then fc, ReLU, ...
            x = layer(x)
        return x


class Res5Head(nn.Module):
    """The ResNet-C4 model's box head (Mask R-CNN paper, fig. 4 left; detectron2's ``Res5ROIHeads``):
    ``res5``, ResNet's fourth stage (stride 2), then the average over each RoI's map:
    (R, 16w, 14, 14) -> (R, 32w, 7, 7) -> (R, 32w). The mask branch shares ``res5`` (its ``mask_head``)."""

    def __init__(self, res5: nn.Sequential):
        super().__init__()
        self.res5 = res5

    def forward(self, x):
        return self.res5(x).mean(axis=(2, 3))  # (R, 32w, 7, 7) -> (R, 32w)


def res5_head(config, rng=None) -> Res5Head:
    """:class:`Res5Head` of ``config``'s ResNet: its fourth stage, from C4's 16w channels to 32w,
    initialised as torchvision's ResNet initialises its convs (He normal, fan_out)."""
    from .backbone import RESNET_LAYERS, make_stage

    c = config
    blocks = (c.backbone_layers or RESNET_LAYERS[c.backbone])[3]
    norm = nn.FrozenBatchNorm2d if c.frozen_batch_norm else nn.BatchNorm2d
    res5 = make_stage(c.backbone_width * 16, c.backbone_width * 8, blocks, 2, norm, rng=rng, dtype=c.dtype)
    for module in res5.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight.data, mode="fan_out", nonlinearity="relu", rng=rng)
    return Res5Head(res5)


class FastRCNNPredictor(nn.Module):
    """(R, D) -> class logits (R, K) and class-specific deltas (R, 4K)."""

    def __init__(self, in_channels: int, num_classes: int, *, rng=None, dtype=np.float32):
        super().__init__()
        rng = nn.init.make_rng(rng)
        self.cls_score = nn.Linear(in_channels, num_classes, rng=rng, dtype=dtype)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4, rng=rng, dtype=dtype)

    def forward(self, x):
        x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))  # (R, C, 1, 1) or (R, C) -> (R, C); R may be 0
        return self.cls_score(x), self.bbox_pred(x)


def conv_norm_relu(in_channels: int, out_channels: int, dilation: int = 1, norm_layer=None, *, rng=None,
                   dtype=np.float32) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` of a 3x3 conv, as the box and mask heads build it:
    ``Sequential(conv, ReLU)`` or, with ``norm_layer``, ``Sequential(conv without bias, norm, ReLU)``.
    The conv's weight He normal (fan_out), its bias 0, as both heads re-initialise them."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=norm_layer is None,
                     rng=rng, dtype=dtype)
    nn.init.kaiming_normal_(conv.weight.data, mode="fan_out", nonlinearity="relu", rng=rng)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias.data)
    norm = () if norm_layer is None else (norm_layer(out_channels, dtype=dtype),)
    return nn.Sequential(conv, *norm, nn.ReLU())


class MaskRCNNHeads(nn.Sequential):
    """Four 3x3 conv (+ norm, torchvision's v2) + ReLU blocks, (R, C, 14, 14) -> (R, 256, 14, 14);
    keys ``i.0.weight`` (conv) and, with ``norm_layer``, ``i.1.*``."""

    def __init__(self, in_channels: int, layers, dilation: int = 1, norm_layer=None, *, rng=None,
                 dtype=np.float32):
        rng = nn.init.make_rng(rng)
        super().__init__(*(conv_norm_relu(c_in, c_out, dilation, norm_layer, rng=rng, dtype=dtype)
                           for c_in, c_out in zip((in_channels, *layers), layers, strict=False)))

    def forward(self, x):
        for block in self:  # conv (+ norm) + ReLU: one folded, fused conv at inference (mrcnn_np.nn.fused)
            x = conv_norm(block[0], block[1] if len(block) > 2 else None, x, relu=True)
        return x


class MaskRCNNPredictor(nn.Module):
    """(R, C, 14, 14) -> (R, K, 28, 28) mask logits: 2x2/2 transposed conv + ReLU, 1x1 conv."""

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int, *, rng=None,
                 dtype=np.float32):
        super().__init__()
        rng = nn.init.make_rng(rng)
        self.conv5_mask = nn.ConvTranspose2d(in_channels, dim_reduced, 2, stride=2, rng=rng, dtype=dtype)
        self.mask_fcn_logits = nn.Conv2d(dim_reduced, num_classes, 1, rng=rng, dtype=dtype)
        for layer in (self.conv5_mask, self.mask_fcn_logits):  # torchvision re-initialises the weights only
            nn.init.kaiming_normal_(layer.weight.data, mode="fan_out", nonlinearity="relu", rng=rng)

    def forward(self, x):
        return self.mask_fcn_logits(F.relu(self.conv5_mask(x)))


class MaskRCNNMLPHead(nn.Module):
    """The paper's MLP mask head (Table 2e): (R, C, 14, 14) -> (R, mlp_dim): flatten, fc1 + ReLU,
    fc2 + ReLU (keys ``fc1.*``, ``fc2.*``; torchvision's Linear initialisation)."""

    def __init__(self, in_features: int, mlp_dim: int, *, rng=None, dtype=np.float32):
        super().__init__()
        rng = nn.init.make_rng(rng)
        self.fc1 = nn.Linear(in_features, mlp_dim, rng=rng, dtype=dtype)
        self.fc2 = nn.Linear(mlp_dim, mlp_dim, rng=rng, dtype=dtype)

    def forward(self, x):
        x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))  # (R, C, 14, 14) -> (R, C*196); R may be 0
        return F.relu(self.fc2(F.relu(self.fc1(x))))


class MaskRCNNMLPPredictor(nn.Module):
    """The MLP mask head's last fc (Table 2e): (R, mlp_dim) -> (R, K, M, M) mask logits, K channels
    (1 with class-agnostic masks) of ``mask_size`` M (key ``mask_fc_logits.*``)."""

    def __init__(self, mlp_dim: int, num_classes: int, mask_size: int, *, rng=None, dtype=np.float32):
        super().__init__()
        self.num_classes, self.mask_size = num_classes, mask_size
        self.mask_fc_logits = nn.Linear(mlp_dim, num_classes * mask_size**2, rng=nn.init.make_rng(rng), dtype=dtype)

    def forward(self, x):
        M = self.mask_size
        return self.mask_fc_logits(x).reshape(x.shape[0], self.num_classes, M, M)  # (R, K*M*M) -> (R, K, M, M)


def make_mask_head(config, norm_layer=None, rng=None):
    """``config.mask_head``: MaskRCNNHeads ("fcn") or MaskRCNNMLPHead ("mlp", ``mask_mlp_dim`` wide), on
    the pooled (fpn_channels, mask_roi_output_size, mask_roi_output_size) features."""
    c = config
    if c.mask_head == "mlp":
        return MaskRCNNMLPHead(c.fpn_channels * c.mask_roi_output_size**2, c.mask_mlp_dim, rng=rng, dtype=c.dtype)
    return MaskRCNNHeads(c.fpn_channels, c.mask_layers, 1, norm_layer, rng=rng, dtype=c.dtype)


def make_mask_predictor(config, in_channels: int | None = None, rng=None):
    """The mask predictor of ``config.mask_head`` with K mask channels, or 1 with ``class_agnostic_masks``:
    MaskRCNNPredictor on ``in_channels`` (default: the last of ``mask_layers``), or MaskRCNNMLPPredictor
    with masks as large as the FCN's (2 x mask_roi_output_size: 28x28)."""
    c = config
    channels = 1 if c.class_agnostic_masks else c.num_classes
    if c.mask_head == "mlp":
        return MaskRCNNMLPPredictor(c.mask_mlp_dim, channels, 2 * c.mask_roi_output_size, rng=rng, dtype=c.dtype)
    return MaskRCNNPredictor(in_channels or c.mask_layers[-1], c.mask_dim_reduced, channels, rng=rng, dtype=c.dtype)


def make_box_head(config, norm_layer=None, rng=None):
    """``config.box_head``: TwoMLPHead (v1) or FastRCNNConvFCHead (v2), on the pooled
    (fpn_channels, box_roi_output_size, box_roi_output_size) features."""
    c = config
    if c.box_head == "FastRCNNConvFCHead":
        return FastRCNNConvFCHead((c.fpn_channels, c.box_roi_output_size, c.box_roi_output_size), c.box_conv_layers,
                                  (c.representation_size,), norm_layer, rng=rng, dtype=c.dtype)
    return TwoMLPHead(c.fpn_channels * c.box_roi_output_size**2, c.representation_size, rng=rng, dtype=c.dtype)


def fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    """Cross-entropy over all sampled RoIs; smooth L1 (beta 1/9) on the positives' deltas of
    their true class, summed and divided by the number of sampled RoIs."""
    xp = get_array_module(as_array(class_logits))
    labels = xp.concatenate(labels)
    regression_targets = xp.concatenate(regression_targets)
    classification_loss = F.cross_entropy(class_logits, labels)
    pos = xp.nonzero(labels > 0)[0]
    N = class_logits.shape[0]
    deltas = box_regression.reshape(N, -1, 4)  # (R, 4K) -> (R, K, 4)
    box_loss = F.smooth_l1_loss(deltas[pos, labels[pos]], regression_targets[pos], beta=1 / 9, reduction="sum")
    return classification_loss, box_loss / max(len(labels), 1)


def project_masks_on_boxes(gt_masks, boxes, matched_idxs, M: int):
    """Ground-truth masks (G, H, W) cut out by the RoIs (R, 4) and resampled to (R, M, M)."""
    xp = get_array_module(boxes)
    rois = xp.concatenate([matched_idxs[:, None].astype(boxes.dtype), boxes], axis=1)
    return roi_align(gt_masks[:, None].astype(boxes.dtype), rois, (M, M), 1.0).data[:, 0]


def maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs, *, mask_loss: str = "sigmoid",
                  class_agnostic: bool = False):
    """BCE between each positive RoI's mask logits *of its true class* and its mask target (P, M, M).

    The paper's Table 2b ablations: ``class_agnostic`` -- the logits have one channel (P, 1, M, M), every
    class's mask; ``mask_loss="softmax"`` -- a softmax over the K channels of each pixel and a multinomial
    cross-entropy, the target t (the mask target, in [0, 1]) on the true class and 1 - t on channel 0, the
    background: ``-(t log p_label + (1 - t) log p_0)``, averaged over the P * M * M pixels as the BCE is."""
    if mask_loss not in MASK_LOSSES:
        raise ValueError(f"maskrcnn_loss: mask_loss must be one of {MASK_LOSSES}, got {mask_loss!r}")
    if mask_loss == "softmax" and class_agnostic:
        raise ValueError("maskrcnn_loss: mask_loss='softmax' needs the K class channels, not class_agnostic ones")
    xp = get_array_module(as_array(mask_logits))
    M = mask_logits.shape[-1]
    labels = xp.concatenate([gl[idx] for gl, idx in zip(gt_labels, mask_matched_idxs, strict=True)])
    targets = [project_masks_on_boxes(m, p, i, M) for m, p, i in
               zip(gt_masks, proposals, mask_matched_idxs, strict=True) if len(p)]
    if not targets:
        return mask_logits.sum() * 0.0
    targets = xp.concatenate(targets)
    rows = xp.arange(len(labels))
    if mask_loss == "softmax":
        probs = xp.zeros(mask_logits.shape, dtype=targets.dtype)  # (P, K, M, M): a distribution per pixel
        probs[rows, 0] = 1 - targets  # background
        probs[rows, labels] = targets  # the true class (labels >= 1: never channel 0)
        return cross_entropy_with_probs(mask_logits, probs)
    channel = xp.zeros_like(labels) if class_agnostic else labels
    return F.binary_cross_entropy_with_logits(mask_logits[rows, channel], targets)


class RoIHeads(nn.Module):
    """torchvision's ``RoIHeads``; :meth:`from_config` builds it, its heads and its poolers with a
    :class:`~mrcnn_np.config.MaskRCNNConfig`'s settings. With ``mask_roi_pool``, ``mask_head`` and
    ``mask_predictor`` all None it is Faster R-CNN's (boxes only, :meth:`has_mask` False), as in
    torchvision."""

    def __init__(self, *, box_roi_pool: MultiScaleRoIAlign, box_head: TwoMLPHead | FastRCNNConvFCHead | Res5Head,
                 box_predictor: FastRCNNPredictor,
                 mask_roi_pool: MultiScaleRoIAlign | None = None,
                 mask_head: MaskRCNNHeads | MaskRCNNMLPHead | None = None,
                 mask_predictor: MaskRCNNPredictor | MaskRCNNMLPPredictor | None = None,
                 fg_iou_thresh: float, bg_iou_thresh: float, batch_size_per_image: int, positive_fraction: float,
                 bbox_reg_weights, score_thresh: float, nms_thresh: float, detections_per_img: int,
                 mask_loss: str, class_agnostic_masks: bool):
        super().__init__()
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        if mask_loss not in MASK_LOSSES:
            raise ValueError(f"RoIHeads: mask_loss must be one of {MASK_LOSSES}, got {mask_loss!r}")
        self.mask_loss = mask_loss  # "sigmoid" (per-class BCE) or "softmax" (over the classes), paper Table 2b
        self.class_agnostic_masks = check_bool("RoIHeads", "class_agnostic_masks", class_agnostic_masks)

    def has_mask(self) -> bool:
        """Whether the mask branch exists (torchvision's ``RoIHeads.has_mask``): all three parts or none."""
        parts = (self.mask_roi_pool, self.mask_head, self.mask_predictor)
        if any(p is None for p in parts) and not all(p is None for p in parts):
            raise ValueError("RoIHeads: mask_roi_pool, mask_head and mask_predictor must be given together "
                             "(Mask R-CNN) or all be None (Faster R-CNN)")
        return parts[0] is not None

    @classmethod
    def from_config(cls, config, *, rng=None, **overrides):
        """The RoI heads of ``config``. The poolers, heads and predictors are built from it unless
        given in ``overrides`` -- weights drawn from ``rng`` in torchvision's order (box head, box
        predictor, mask head, mask predictor); other keywords in ``overrides`` replace settings.
        ``config.mask_branch=False``: the mask parts are None (Faster R-CNN)."""
        c = as_config(config, "RoIHeads.from_config")
        rng = nn.init.make_rng(rng)  # one stream for all four
        norm = nn.BatchNorm2d if c.head_batch_norm else None
        parts = dict(
            box_roi_pool=lambda: MultiScaleRoIAlign(c.roi_featmap_names, c.box_roi_output_size, c.roi_sampling_ratio,
                                                    roi_pooler=c.roi_pooler),
            box_head=lambda: make_box_head(c, norm, rng),
            box_predictor=lambda: FastRCNNPredictor(c.representation_size, c.num_classes, rng=rng, dtype=c.dtype),
            mask_roi_pool=lambda: MultiScaleRoIAlign(c.roi_featmap_names, c.mask_roi_output_size,
                                                     c.roi_sampling_ratio, roi_pooler=c.roi_pooler),
            mask_head=lambda: make_mask_head(c, norm, rng),
            mask_predictor=lambda: make_mask_predictor(c, rng=rng),
        )
        if c.architecture == "c4":  # res5 is the box head and, shared, the mask head (paper fig. 4, left)
            width = c.backbone_width * 32  # res5's output channels
            parts.update(
                box_head=lambda: res5_head(c, rng),
                box_predictor=lambda: FastRCNNPredictor(width, c.num_classes, rng=rng, dtype=c.dtype),
                mask_head=lambda: overrides["box_head"].res5,
                mask_predictor=lambda: make_mask_predictor(c, width, rng))
        if not c.mask_branch:
            for name in ("mask_roi_pool", "mask_head", "mask_predictor"):
                parts[name] = lambda: None
        for name, build in parts.items():  # in this order: the weights' random draws depend on it
            if name not in overrides:
                overrides[name] = build()
        settings = dict(
            fg_iou_thresh=c.box_fg_iou_thresh, bg_iou_thresh=c.box_bg_iou_thresh,
            batch_size_per_image=c.box_batch_size_per_image, positive_fraction=c.box_positive_fraction,
            bbox_reg_weights=c.bbox_reg_weights, score_thresh=c.box_score_thresh, nms_thresh=c.box_nms_thresh,
            detections_per_img=c.box_detections_per_img, mask_loss=c.mask_loss,
            class_agnostic_masks=c.class_agnostic_masks,
        )
        return cls(**{**settings, **overrides})

    # --- inference -------------------------------------------------------------------------------
    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """Softmax, per-class boxes, clip, threshold, per-class NMS, top detections_per_img."""
        xp = get_array_module(class_logits)
        K = class_logits.shape[-1]
        pred_boxes = self.box_coder.decode(box_regression, xp.concatenate(proposals))  # (R, K, 4)
        pred_scores = as_array(F.softmax(class_logits, -1))
        out, start = [], 0
        for props, shape in zip(proposals, image_shapes, strict=True):
            boxes = clip_boxes_to_image(pred_boxes[start : start + len(props)], shape)
            scores = pred_scores[start : start + len(props)]
            start += len(props)
            labels = xp.broadcast_to(xp.arange(K), scores.shape)
            # drop the background column: (R, K-1, 4) -> (R*(K-1), 4), (R, K-1) -> (R*(K-1),)
            boxes = boxes[:, 1:].reshape(-1, 4)
            scores = scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            keep = xp.nonzero(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, 1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": boxes[keep], "labels": labels[keep].astype(np.int64), "scores": scores[keep]})
        return out

    @no_grad()
    def predict(self, features: dict, proposals: list, image_shapes: list) -> list:
        """Detections per image (in the resized image's coordinates), masks (D, 1, 28, 28) when the
        mask branch exists. Runs without the autograd tape."""
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        results = self.postprocess_detections(as_array(class_logits), as_array(box_regression), proposals,
                                              image_shapes)
        if not self.has_mask():
            return results
        mask_boxes = [r["boxes"] for r in results]
        mask_features = self.mask_head(self.mask_roi_pool(features, mask_boxes, image_shapes))
        mask_logits = self.mask_predictor(mask_features)  # (D, K, 28, 28); (D, 1, 28, 28) class-agnostic
        if self.mask_loss == "softmax":  # trained with a softmax over the classes: the same at inference
            probs = as_array(F.softmax(mask_logits, 1))
        else:
            probs = as_array(F.sigmoid(mask_logits))
        xp = get_array_module(probs)
        labels = xp.concatenate([r["labels"] for r in results])
        channel = xp.zeros_like(labels) if self.class_agnostic_masks else labels
        probs = probs[xp.arange(len(labels)), channel][:, None]  # the predicted class's mask: (D, 1, 28, 28)
        start = 0
        for r in results:
            r["masks"] = probs[start : start + len(r["boxes"])]
            start += len(r["boxes"])
        return results

    # --- training --------------------------------------------------------------------------------
    def select_training_samples(self, proposals: list, targets: list, rng=None, sampled=None):
        """Add the ground truth to the proposals, match (IoU 0.5), sample 512 (25% positive).

        Returns per image: sampled proposals, matched gt index, labels (0 = background),
        regression targets; and the draw, (pos_masks, neg_masks) over proposals + gt. Given as
        ``sampled``, a draw is reproduced; otherwise ``rng`` draws one."""
        xp = get_array_module(proposals[0])
        dtype = proposals[0].dtype
        gt_boxes = [t["boxes"].astype(dtype) for t in targets]
        proposals = [xp.concatenate([p, g]) for p, g in zip(proposals, gt_boxes, strict=True)]
        matched_idxs, labels = [], []
        for props, gt, t in zip(proposals, gt_boxes, targets, strict=True):
            if len(gt) == 0:
                matched_idxs.append(xp.zeros(len(props), dtype=np.int64))
                labels.append(xp.zeros(len(props), dtype=np.int64))
                continue
            matches = self.proposal_matcher(box_iou(gt, props))
            matched_idxs.append(xp.maximum(matches, 0))
            labels.append(labels_of_matches(matches, t["labels"].astype(np.int64)))
        if sampled is None:
            sampled = self.fg_bg_sampler(labels, nn.init.make_rng(rng))
        regression_targets = []
        for i, (pos, neg) in enumerate(zip(*sampled, strict=True)):
            keep = xp.nonzero(pos | neg)[0]
            proposals[i] = proposals[i][keep]
            labels[i] = labels[i][keep]
            matched_idxs[i] = matched_idxs[i][keep]
            if len(gt_boxes[i]):
                regression_targets.append(self.box_coder.encode(gt_boxes[i][matched_idxs[i]], proposals[i]))
            else:  # no box, no target (and no positive to use one)
                regression_targets.append(xp.zeros_like(proposals[i]))
        return proposals, matched_idxs, labels, regression_targets, sampled

    def loss(self, features: dict, proposals: list, image_shapes: list, targets: list, rng=None,
             sampled=None) -> tuple[dict, tuple]:
        """Losses ``loss_classifier``, ``loss_box_reg``, ``loss_mask`` (with the mask branch; then
        every target needs its ``masks``) for one batch, and the RoIs
        they were computed on, ``sampled = (pos_masks, neg_masks)`` (see
        :meth:`select_training_samples`; ``rng`` or ``sampled`` must be given)."""
        if rng is None and sampled is None:
            raise ValueError("RoIHeads.loss samples RoIs: pass rng= (a Generator or a seed) "
                             "or sampled=(pos_masks, neg_masks)")
        xp = get_array_module(proposals[0])
        proposals, matched_idxs, labels, reg_targets, sampled = self.select_training_samples(proposals, targets, rng,
                                                                                            sampled)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, reg_targets)
        if not self.has_mask():
            return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}, sampled
        positives = [xp.nonzero(lab > 0)[0] for lab in labels]
        mask_proposals = [p[pos] for p, pos in zip(proposals, positives, strict=True)]
        pos_matched = [m[pos] for m, pos in zip(matched_idxs, positives, strict=True)]
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes)))
        loss_mask = maskrcnn_loss(mask_logits, mask_proposals, [t["masks"] for t in targets],
                                  [t["labels"] for t in targets], pos_matched, mask_loss=self.mask_loss,
                                  class_agnostic=self.class_agnostic_masks)
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss_mask": loss_mask}
        return losses, sampled
