"""Exercise 03 -- the region proposal network: flatten the head, decode, select, and the loss.

Fill in the four graded functions below (tasks a-d in README.md) with NumPy only, then run

    mrcnn-np check 03                      # grades this file
    mrcnn-np check 03 --path my_copy.py    # grades your copy
    mrcnn-np check 03 --hint               # one more hint for the first task that does not pass

Conventions (torchvision's): arrays are float64 in the grader; boxes are absolute xyxy
pixels (x1, y1, x2, y2); N images, A anchors per location, a level l has an H_l x W_l
feature map; ``total = sum over levels of H_l * W_l * A``. The anchors of a batch are
ordered level, then location (row-major: y outer, x inner), then anchor: anchor ``a`` at
``(y, x)`` of level ``l`` is row ``offset_l + (y * W_l + x) * A + a``, where ``offset_l``
counts the anchors of the levels before ``l``.

The helpers (sigmoid, nms) are not graded on their own: use them, or not. You may paste
your ``nms`` (and ``box_iou``) from exercise 02.
"""

import math

import numpy as np  # noqa: F401  (you will need it)

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # the clamp of dw and dh in decode, torchvision's


# --- task (a) ----------------------------------------------------------------------------------
def flatten_head_outputs(logits, deltas):
    """The RPN head's outputs, one array per level, as one row per anchor: torchvision's
    ``concat_box_prediction_layers`` (``models/detection/rpn.py``), per image.

    logits: list over levels of (N, A, H_l, W_l): the objectness logit of anchor a at (y, x).
    deltas: list over levels of (N, 4*A, H_l, W_l): channel ``4*a + k`` is coordinate k
        (dx, dy, dw, dh) of anchor a.
    Returns ``(objectness, box_deltas)``: (N, total) and (N, total, 4), where column
    ``offset_l + (y * W_l + x) * A + a`` is anchor a at (y, x) of level l (levels in order,
    locations row-major, anchors inner), the order of the anchors from exercise 02. The values
    are copies of the inputs, only moved.
    """
    raise NotImplementedError("task (a): write flatten_head_outputs")


# --- task (b) ----------------------------------------------------------------------------------
def decode_proposals(deltas, anchors):
    """Apply every image's deltas to the anchors: the RPN's box coder, weights (1, 1, 1, 1).

    deltas: (N, total, 4) as (dx, dy, dw, dh); anchors: (total, 4) xyxy, the same for every image.
    Returns proposals (N, total, 4) xyxy float64: for each image n, exercise 02's decode of
    deltas[n] on the anchors with weights (1, 1, 1, 1) and the clamp BBOX_XFORM_CLIP (from above
    only, on dw and dh) -- torchvision's ``BoxCoder.decode`` as ``RegionProposalNetwork`` calls it.
    """
    raise NotImplementedError("task (b): write decode_proposals")


# --- task (c) ----------------------------------------------------------------------------------
def sigmoid(x):
    """(helper for task c) The logistic function 1 / (1 + exp(-x)), elementwise, same shape as x."""
    raise NotImplementedError("helper for task (c): write sigmoid")


def nms(boxes, scores, iou_threshold):
    """(helper for task c) Greedy non-maximum suppression, as in exercise 02 (``torchvision.ops.nms``).

    boxes: (R, 4) xyxy; scores: (R,). Returns the kept indices (K,) int64 by decreasing score
    (equal scores: lower index first); a box is suppressed when its IoU with an already
    kept box is > iou_threshold.
    """
    raise NotImplementedError("helper for task (c): write nms (or paste yours from exercise 02)")


def select_proposals(proposals, objectness, num_anchors_per_level, image_size, pre_nms_top_n=1000,
                     post_nms_top_n=1000, nms_thresh=0.7, min_size=1e-3, score_thresh=0.0):
    """The proposals of ONE image: torchvision's ``RegionProposalNetwork.filter_proposals``.

    proposals: (total, 4) decoded boxes; objectness: (total,) logits, both in anchor order;
    num_anchors_per_level: list of ints (H_l * W_l * A), summing to total;
    image_size: (height, width) of the image (before padding).
    Returns ``(boxes, scores)``: what filter_proposals returns for this image with these
    arguments (as the RPN's pre_nms_top_n, post_nms_top_n, nms_thresh, score_thresh and its
    min_size), as NumPy: (P, 4) float64 boxes, clipped to the image (x in [0, width], y in
    [0, height]), and their (P,) float64 probabilities, the sigmoid of their logits, by
    decreasing score, P <= post_nms_top_n; (0, 4) and (0,) when nothing survives.
    What the grader checks beyond the common cases, as torchvision does it: pre_nms_top_n
    counts per level (a level with fewer anchors gives all of them); boxes of different levels
    never suppress each other; a score equal to score_thresh stays; min_size applies to the
    clipped box; equal logits rank the lower anchor index first, and equal scores keep the
    candidates' order (levels in order, within a level by logit rank).
    The inputs are not modified.
    """
    raise NotImplementedError("task (c): write select_proposals")


# --- task (d) ----------------------------------------------------------------------------------
def rpn_loss(objectness, deltas, labels, regression_targets, sampled_pos, sampled_neg):
    """The RPN's two training losses, for a batch flattened to M = N * total anchors:
    torchvision's ``RegionProposalNetwork.compute_loss``.

    objectness: (M,) logits; deltas: (M, 4) predicted (dx, dy, dw, dh);
    labels: (M,) float, 1.0 positive, 0.0 negative, -1.0 ignored;
    regression_targets: (M, 4) the deltas that would move each anchor onto its matched
        ground-truth box (meaningful for positives only);
    sampled_pos, sampled_neg: (M,) bool masks of the anchors the sampler drew (256 per image,
        at most half positive).
    Returns ``(loss_objectness, loss_box)``, two Python floats: the objectness loss is the mean,
    over the sampled anchors (positive and negative), of binary cross-entropy with logits
    between objectness and labels, computed without overflow for logits of +-45; the box loss
    is the sum, over the sampled positives and their 4 coordinates, of the smooth L1 loss
    (beta 1/9) of deltas - regression_targets, divided by the number of sampled anchors
    (positive and negative). No positives: the box loss is 0.
    """
    raise NotImplementedError("task (d): write rpn_loss")
