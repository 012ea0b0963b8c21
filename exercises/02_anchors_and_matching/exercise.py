"""Exercise 02 -- anchors and matching: IoU, anchors, the box coder and non-maximum suppression.

Fill in the six graded functions below (tasks a-d in README.md) with NumPy only, then run

    mrcnn-np check 02                      # grades this file
    mrcnn-np check 02 --path my_copy.py    # grades your copy
    mrcnn-np check 02 --hint               # one more hint for the first task that does not pass

Conventions (the same as torchvision): boxes are (R, 4) float64 arrays of absolute pixel
corners ``x1, y1, x2, y2`` with x1 <= x2 and y1 <= y2 ("xyxy"); width = x2 - x1,
height = y2 - y1 (no "+ 1"). An aspect ratio is height / width. Deltas are (R, 4) arrays
``dx, dy, dw, dh``. Indices are int64.

The helper box_area is not graded on its own: use it, or not.
"""

import math

import numpy as np  # noqa: F401  (you will need it)

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # decode's default clamp of dw, dh: boxes grow at most 62.5x


def box_area(boxes):
    """(helper) Areas of boxes: (R, 4) xyxy -> (R,), width times height of each."""
    raise NotImplementedError("helper: write box_area (or compute the areas inside box_iou)")


# --- task (a) ----------------------------------------------------------------------------------
def box_iou(boxes1, boxes2):
    """Pairwise intersection over union: ``torchvision.ops.box_iou``.

    boxes1: (R1, 4), boxes2: (R2, 4), xyxy, float64.  Returns iou: (R1, R2) float64, entry
    (i, j) the area of the overlap of boxes1[i] and boxes2[j] (0 when they do not overlap,
    including boxes that only touch) divided by the area of their union. Every box of the
    grader has a positive area. R1 or R2 may be 0 (an image without objects): then the
    result is an empty (R1, R2) array.
    """
    raise NotImplementedError("task (a): write box_iou")


# --- task (b) ----------------------------------------------------------------------------------
def cell_anchors(sizes, aspect_ratios):
    """The anchors of one location, centred on (0, 0): torchvision's ``AnchorGenerator.generate_anchors``.

    sizes: tuple of S ints (e.g. (32,)); aspect_ratios: tuple of K floats, height / width
    (e.g. (0.5, 1.0, 2.0)).  Returns (K * S, 4) float32, one anchor per (ratio, size): a box
    w wide and h high with w * h equal to size**2 and h / w to the ratio, centred on (0, 0), its
    corners (-w/2, -h/2, w/2, h/2) rounded to whole numbers half to even (as torch.round: 22.5 gives 22).
    Computed in float32 throughout, as torchvision (the rounding near .5 depends on it).
    Row k * S + s is ratio k with size s (ratios outer, sizes inner).
    """
    raise NotImplementedError("task (b): write cell_anchors")


def grid_anchors(image_size, feature_sizes, sizes, aspect_ratios):
    """The anchors of every location of every feature level, as torchvision's ``AnchorGenerator``.

    image_size: (H, W) of the (padded) image; feature_sizes: a list of L pairs (h_l, w_l);
    sizes, aspect_ratios: L tuples each, the ``sizes`` and ``aspect_ratios`` of each level's
    cell anchors (A_l of len(sizes[l]) * len(aspect_ratios[l])).
    Level l has the stride H // h_l along y and W // w_l along x (integer division); the
    anchors of location (row y, column x) are the level's cell anchors moved by x times the
    x stride and y times the y stride, both corners.
    Returns (sum over l of h_l * w_l * A_l, 4) float32, ordered by level, then location
    (row-major: y outer, x inner), then anchor (the order of cell_anchors).
    """
    raise NotImplementedError("task (b): write grid_anchors")


# --- task (c) ----------------------------------------------------------------------------------
def encode(reference_boxes, proposals, weights):
    """The regression targets that move each proposal onto its reference (ground-truth) box.

    reference_boxes: (R, 4) xyxy, the targets G; proposals: (R, 4) xyxy, the boxes P they
    are measured from (anchors, proposals); weights: (wx, wy, ww, wh). torchvision's
    ``BoxCoder.encode_single`` (R-CNN, appendix C). Returns deltas (R, 4) float64, per row:
    dx, the shift of the centre along x in units of P's width, times wx; dy likewise along
    y with P's height and wy; dw, the log of G's width over P's width, times ww; dh likewise
    with the heights and wh. Centres are x1 + 0.5 * width (and y1 + 0.5 * height).
    """
    raise NotImplementedError("task (c): write encode")


def decode(deltas, boxes, weights, clip=BBOX_XFORM_CLIP):
    """Apply regression deltas to boxes, the inverse of encode: torchvision's ``BoxCoder.decode_single``.

    deltas: (R, 4) ``dx, dy, dw, dh``; boxes: (R, 4) xyxy, the boxes P the deltas are
    relative to; weights: (wx, wy, ww, wh); clip: a float, by default log(1000 / 16).
    Returns (R, 4) xyxy float64 boxes G with decode(encode(G, P, w), P, w) equal to G, except
    that dw / ww and dh / wh are clamped from above (only) at ``clip`` before exponentiating:
    a box grows at most exp(clip) times per side (1000 / 16 = 62.5 by default), a very
    negative dw just makes a tiny box.
    """
    raise NotImplementedError("task (c): write decode")


# --- task (d) ----------------------------------------------------------------------------------
def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression: ``torchvision.ops.nms``.

    boxes: (R, 4) xyxy; scores: (R,); iou_threshold: float.  Returns the indices into
    ``boxes`` of the boxes kept, (K,) int64, by decreasing score. The boxes are ranked by
    decreasing score (equal scores: lower index first); a box is kept exactly when no
    higher-ranked *kept* box has an IoU **strictly greater** than iou_threshold with it (an
    IoU equal to the threshold does not suppress). R may be 0: then an empty int64 array.
    """
    raise NotImplementedError("task (d): write nms")
