"""Region Proposal Network: objectness and box deltas for every anchor, then proposals.

In:  FPN features {"0": P2, ..., "pool": P6}, each (N, C, h_l, w_l); the padded batch size
     (H, W) and every image's own size (h_i, w_i) before padding.
Out: per image, proposals (P_i, 4) xyxy and their objectness probabilities (P_i,);
     in training also ``loss_objectness`` and ``loss_rpn_box_reg``.

    head       shared over levels: 3x3 conv + ReLU (twice in torchvision's v2), then 1x1 convs to A
               logits and 4A deltas
    flatten    (N, A*C, h, w) -> (N, h*w*A, C) per level, levels concatenated (anchor order)
    decode     deltas applied to the anchors with BoxCoder(1, 1, 1, 1)
    select     per level the pre_nms_top_n highest logits; then per image: clip to the image,
               drop boxes smaller than min_size, drop scores below score_thresh, NMS 0.7
               within each level (batched_nms by level), keep post_nms_top_n
    train      anchors matched to ground truth (IoU >= 0.7 positive, < 0.3 negative, the
               best anchors of every box positive too); 256 anchors sampled, half positive;
               BCE on the sampled logits, smooth L1 (beta 1/9) on positive deltas divided
               by the number sampled

Ren et al., "Faster R-CNN" (2015), sec. 3.1; with FPN, the RPN runs on every level
(Lin et al. 2017, sec. 4.1) -- not only the finest, as some tutorials say. Torchvision
``models/detection/rpn.py``. Parameter names: ``head.conv.0.0.weight``,
``head.cls_logits.weight``, ``head.bbox_pred.weight`` (and biases).

Inference is :meth:`RegionProposalNetwork.predict` (without the autograd tape); training is
:meth:`RegionProposalNetwork.loss`, which also returns the proposals and the sampled anchors.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import concat, no_grad
from ..backend import as_array, get_array_module
from ..checks import check_boxes
from ..config import as_config
from ..nn import functional as F
from ..nn.fused import conv_norm
from ..ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from ..ops.box_coder import BoxCoder
from ..ops.matcher import Matcher, labels_of_matches
from ..ops.sampler import BalancedPositiveNegativeSampler
from .anchors import AnchorGenerator


class RPNHead(nn.Module):
    """``conv_depth`` blocks of 3x3 conv (C -> C) + ReLU (1; torchvision's v2: 2), then 1x1 convs to
    ``A`` objectness logits and ``4A`` deltas; weights N(0, 0.01^2), biases 0, as torchvision.
    Applied to every level with shared weights."""

    def __init__(self, in_channels: int, num_anchors: int, conv_depth: int = 1, *, rng=None, dtype=np.float32):
        super().__init__()
        rng = nn.init.make_rng(rng)
        # keys conv.i.0.weight: each block is torchvision's Conv2dNormActivation (conv, ReLU)
        self.conv = nn.Sequential(*(nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1, rng=rng,
                                                            dtype=dtype)) for _ in range(conv_depth)))
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1, rng=rng, dtype=dtype)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1, rng=rng, dtype=dtype)
        for conv in (*(block[0] for block in self.conv), self.cls_logits, self.bbox_pred):
            nn.init.normal_(conv.weight.data, std=0.01, rng=rng)
            nn.init.zeros_(conv.bias.data)

    def forward(self, features: list) -> tuple[list, list]:
        """[(N, C, h_l, w_l)] -> logits [(N, A, h_l, w_l)], deltas [(N, 4A, h_l, w_l)]."""
        logits, deltas = [], []
        for feature in features:
            t = feature
            for block in self.conv:
                t = conv_norm(block[0], None, t, relu=True)  # conv + ReLU, fused at inference
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def permute_and_flatten(layer, N: int, A: int, C: int, H: int, W: int):
    """(N, A*C, H, W) -> (N, H*W*A, C): one row per anchor, in the anchors' order."""
    layer = layer.reshape(N, A, C, H, W)  # (N, A*C, H, W) -> (N, A, C, H, W)
    layer = layer.permute(0, 3, 4, 1, 2)  # -> (N, H, W, A, C)
    return layer.reshape(N, -1, C)  # -> (N, H*W*A, C)


def concat_box_prediction_layers(logits: list, deltas: list):
    """Per-level head outputs -> objectness (N * total, 1) and deltas (N * total, 4),
    image-major, then level, location and anchor (torchvision's layout)."""
    flat_logits, flat_deltas = [], []
    for lg, dl in zip(logits, deltas, strict=True):
        N, A, H, W = lg.shape
        flat_logits.append(permute_and_flatten(lg, N, A, 1, H, W))
        flat_deltas.append(permute_and_flatten(dl, N, A, 4, H, W))
    objectness = concat(flat_logits, axis=1).reshape(-1, 1)  # (N, total, 1) -> (N*total, 1)
    box_deltas = concat(flat_deltas, axis=1).reshape(-1, 4)  # (N, total, 4) -> (N*total, 4)
    return objectness, box_deltas


def top_n_per_level(objectness, num_anchors_per_level: list[int], top_n: int):
    """(N, total) logits -> (N, K) indices of the ``top_n`` largest per level, descending
    within each level (ties: lower index first), levels in order."""
    xp = get_array_module(objectness)
    picks, offset = [], 0
    for n in num_anchors_per_level:
        level = objectness[:, offset : offset + n]
        order = xp.argsort(-level, axis=1, kind="stable")[:, : min(top_n, n)]
        picks.append(order + offset)
        offset += n
    return xp.concatenate(picks, axis=1)


class RegionProposalNetwork(nn.Module):
    """torchvision's ``RegionProposalNetwork``; :meth:`from_config` builds it with a
    :class:`~mrcnn_np.config.MaskRCNNConfig`'s settings (torchvision's Mask R-CNN defaults)."""

    def __init__(self, *, anchor_generator: AnchorGenerator, head: RPNHead, fg_iou_thresh: float,
                 bg_iou_thresh: float, batch_size_per_image: int, positive_fraction: float, pre_nms_top_n: dict,
                 post_nms_top_n: dict, nms_thresh: float, score_thresh: float, min_size: float = 1e-3):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = dict(pre_nms_top_n)  # {"training": n, "testing": n}
        self.post_nms_top_n = dict(post_nms_top_n)
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = min_size  # torchvision's constant: boxes under 1e-3 px are dropped

    @classmethod
    def from_config(cls, config, *, rng=None, **overrides):
        """The RPN of ``config``; ``anchor_generator`` and ``head`` are built from it (the head's
        weights drawn from ``rng``) unless given. Other keywords in ``overrides`` replace settings."""
        config = as_config(config, "RegionProposalNetwork.from_config")
        if "anchor_generator" not in overrides:
            overrides["anchor_generator"] = AnchorGenerator.from_config(config)
        if "head" not in overrides:
            num_anchors = overrides["anchor_generator"].num_anchors_per_location()[0]
            overrides["head"] = RPNHead(config.feature_channels, num_anchors, config.rpn_conv_depth, rng=rng,
                                        dtype=config.dtype)
        settings = dict(
            fg_iou_thresh=config.rpn_fg_iou_thresh, bg_iou_thresh=config.rpn_bg_iou_thresh,
            batch_size_per_image=config.rpn_batch_size_per_image, positive_fraction=config.rpn_positive_fraction,
            pre_nms_top_n=config.rpn_pre_nms_top_n, post_nms_top_n=config.rpn_post_nms_top_n,
            nms_thresh=config.rpn_nms_thresh, score_thresh=config.rpn_score_thresh,
        )
        return cls(**{**settings, **overrides})

    # --- shared stages -----------------------------------------------------------------------
    def _head_and_decode(self, image_size, features: dict):
        """Run the head; returns (objectness Tensor (N*total, 1), deltas Tensor (N*total, 4),
        anchors [ (total, 4) ] per image, proposals (N, total, 4), anchors per level)."""
        maps = list(features.values())
        logits, deltas = self.head(maps)
        anchors = self.anchor_generator(image_size, maps)
        num_per_level = [int(np.prod(lg.shape[1:])) for lg in logits]  # A * h * w
        objectness, box_deltas = concat_box_prediction_layers(logits, deltas)
        xp = get_array_module(box_deltas)
        N = len(anchors)
        proposals = self.box_coder.decode(as_array(box_deltas), xp.concatenate(anchors, axis=0))
        return objectness, box_deltas, anchors, proposals.reshape(N, -1, 4), num_per_level

    def filter_proposals(self, proposals, objectness, image_sizes, num_anchors_per_level, pre_n, post_n):
        """Top-n per level, clip, drop small, drop low scores, NMS per level, keep post_n.

        proposals (N, total, 4), objectness logits (N*total,) or (N, total) array.
        Returns per image: boxes (P_i, 4), probabilities (P_i,)."""
        xp = get_array_module(proposals)
        N = proposals.shape[0]
        objectness = as_array(objectness).reshape(N, -1)  # (N*total, 1) -> (N, total)
        levels = xp.concatenate([xp.full(n, i, dtype=np.int64) for i, n in enumerate(num_anchors_per_level)])
        top = top_n_per_level(objectness, num_anchors_per_level, pre_n)  # (N, K)
        rows = xp.arange(N)[:, None]
        objectness = objectness[rows, top]
        proposals = proposals[rows, top]
        levels = levels[top]
        probs = as_array(F.sigmoid(objectness))
        final_boxes, final_scores = [], []
        for boxes, scores, lvl, size in zip(proposals, probs, levels, image_sizes, strict=True):
            boxes = clip_boxes_to_image(boxes, size)
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = xp.nonzero(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms(boxes, scores, lvl, self.nms_thresh)[:post_n]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores

    # --- inference -----------------------------------------------------------------------------
    @no_grad()
    def predict(self, image_size, image_sizes, features: dict):
        """Proposals for a batch: ``image_size`` (H, W) of the padded batch, ``image_sizes`` the
        (h, w) of each image, ``features`` the FPN dict. -> (boxes list, scores list).
        Runs without the autograd tape."""
        objectness, _, _, proposals, per_level = self._head_and_decode(image_size, features)
        return self.filter_proposals(proposals, objectness, image_sizes, per_level,
                                     self.pre_nms_top_n["testing"], self.post_nms_top_n["testing"])

    # --- training ------------------------------------------------------------------------------
    def assign_targets_to_anchors(self, anchors: list, gt_boxes: list):
        """Per image: labels (A,) 1 / 0 / -1 (positive, negative, ignored) and the matched
        ground-truth box of every anchor (A, 4) (zeros for an image without boxes)."""
        labels, matched = [], []
        for anchors_i, gt in zip(anchors, gt_boxes, strict=True):
            xp = get_array_module(anchors_i)
            if len(gt) == 0:
                labels.append(xp.zeros(len(anchors_i), dtype=anchors_i.dtype))
                matched.append(xp.zeros_like(anchors_i))
                continue
            matched_idxs = self.proposal_matcher(box_iou(gt.astype(anchors_i.dtype), anchors_i))
            matched.append(gt[xp.maximum(matched_idxs, 0)].astype(anchors_i.dtype))
            labels.append(labels_of_matches(matched_idxs, xp.ones(len(gt), dtype=anchors_i.dtype)))
        return labels, matched

    def compute_loss(self, objectness, box_deltas, labels: list, regression_targets: list, pos_masks, neg_masks):
        """BCE over the sampled anchors (mean) and smooth L1 (beta 1/9) over the sampled
        positives, summed and divided by the number sampled. Masks: per image (A,) uint8."""
        xp = get_array_module(as_array(box_deltas))
        pos = xp.nonzero(xp.concatenate(pos_masks))[0]
        neg = xp.nonzero(xp.concatenate(neg_masks))[0]
        sampled = xp.concatenate([pos, neg])
        labels = xp.concatenate(labels)
        targets = xp.concatenate(regression_targets)
        box_loss = F.smooth_l1_loss(box_deltas[pos], targets[pos], beta=1 / 9, reduction="sum") / max(len(sampled), 1)
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.reshape(-1)[sampled], labels[sampled])
        return objectness_loss, box_loss

    def loss(self, image_size, image_sizes, features: dict, gt_boxes: list, rng=None, sampled=None):
        """Proposals (training top-n), the two RPN losses, and the anchors they were computed on.

        ``gt_boxes``: per image (G_i, 4) xyxy (may be empty). The anchors for the loss are
        drawn with ``rng`` (a Generator, advanced by the draw, or a seed), or given as ``sampled
        = (pos_masks, neg_masks)`` -- per image (A,) uint8 -- to reproduce a particular draw.
        Returns (boxes list, scores list, {"loss_objectness", "loss_rpn_box_reg"}, sampled).
        """
        if rng is None and sampled is None:
            raise ValueError("RegionProposalNetwork.loss samples anchors: pass rng= (a Generator or a seed) "
                             "or sampled=(pos_masks, neg_masks)")
        for i, gt in enumerate(gt_boxes):
            check_boxes(gt, f"gt_boxes[{i}]")
        objectness, box_deltas, anchors, proposals, per_level = self._head_and_decode(image_size, features)
        boxes, scores = self.filter_proposals(proposals, objectness, image_sizes, per_level,
                                              self.pre_nms_top_n["training"], self.post_nms_top_n["training"])
        labels, matched = self.assign_targets_to_anchors(anchors, gt_boxes)
        targets = []
        for matched_i, anchors_i, gt in zip(matched, anchors, gt_boxes, strict=True):
            if len(gt):
                targets.append(self.box_coder.encode(matched_i, anchors_i))
            else:  # no box, no target (and no positive anchor to use one)
                targets.append(get_array_module(anchors_i).zeros_like(anchors_i))
        if sampled is None:
            sampled = self.fg_bg_sampler(labels, nn.init.make_rng(rng))
        loss_objectness, loss_box = self.compute_loss(objectness, box_deltas, labels, targets, *sampled)
        return boxes, scores, {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}, sampled
