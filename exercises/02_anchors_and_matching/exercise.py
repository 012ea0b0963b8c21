"""Exercise 02 -- anchors and matching: IoU, anchors, the box coder and non-maximum suppression.

Fill in the six graded functions below (tasks a-d in README.md) with NumPy only, then run

    mrcnn-np check 02                      # grades this file
    mrcnn-np check 02 --path my_copy.py    # grades your copy

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
    """(helper) Areas of boxes: (R, 4) xyxy -> (R,), ``(x2 - x1) * (y2 - y1)``."""
    raise NotImplementedError("helper: write box_area (or compute the areas inside box_iou)")


# --- task (a) ----------------------------------------------------------------------------------
def box_iou(boxes1, boxes2):
    """Pairwise intersection over union.

    boxes1: (R1, 4), boxes2: (R2, 4), xyxy.  Returns iou: (R1, R2) with
    ``iou[i, j] = inter / (area1[i] + area2[j] - inter)``, ``inter`` the area of the
    overlap of boxes1[i] and boxes2[j] (0 when they do not overlap). Every box of the
    grader has a positive area. R1 or R2 may be 0 (an image without objects).
    """
    raise NotImplementedError("task (a): write box_iou")


# --- task (b) ----------------------------------------------------------------------------------
def cell_anchors(sizes, aspect_ratios):
    """The A = len(aspect_ratios) * len(sizes) anchors of one location, centred on (0, 0).

    sizes: tuple of S ints (e.g. (32,)); aspect_ratios: tuple of K floats, height / width
    (e.g. (0.5, 1.0, 2.0)).  Returns (A, 4) float32 ``round(-w/2), round(-h/2), round(w/2),
    round(h/2)`` with ``h = size * sqrt(ratio)``, ``w = size / sqrt(ratio)``, computed in
    float32 and rounded half to even (np.round). Row ``k * S + s`` is ratio k with size s
    (ratios outer, sizes inner).
    """
    raise NotImplementedError("task (b): write cell_anchors")


def grid_anchors(image_size, feature_sizes, sizes, aspect_ratios):
    """The anchors of every location of every feature level, as torchvision's AnchorGenerator.

    image_size: (H, W) of the (padded) image; feature_sizes: a list of L pairs (h_l, w_l);
    sizes, aspect_ratios: L tuples each, the ``sizes`` and ``aspect_ratios`` of each level's
    cell anchors (A_l = len(sizes[l]) * len(aspect_ratios[l])).
    Level l has stride ``(H // h_l, W // w_l)``; the anchors of location (row y, column x)
    are the level's cell anchors shifted by ``(x * stride_w, y * stride_h)`` on both corners.
    Returns (sum_l h_l * w_l * A_l, 4) float32, ordered by level, then location (row-major:
    y outer, x inner), then anchor (the order of cell_anchors).
    """
    raise NotImplementedError("task (b): write grid_anchors")


# --- task (c) ----------------------------------------------------------------------------------
def encode(reference_boxes, proposals, weights):
    """The regression targets that move each proposal onto its reference (ground-truth) box.

    reference_boxes: (R, 4) xyxy, the targets G; proposals: (R, 4) xyxy, the boxes P they
    are measured from (anchors, proposals); weights: (wx, wy, ww, wh).  With centres
    (x, y) and sizes (w, h) of each box, returns deltas (R, 4):
        dx = wx * (Gx - Px) / Pw        dw = ww * log(Gw / Pw)
        dy = wy * (Gy - Py) / Ph        dh = wh * log(Gh / Ph)
    """
    raise NotImplementedError("task (c): write encode")


def decode(deltas, boxes, weights, clip=BBOX_XFORM_CLIP):
    """Apply regression deltas to boxes: the inverse of encode.

    deltas: (R, 4) ``dx, dy, dw, dh``; boxes: (R, 4) xyxy, the boxes P the deltas are
    relative to; weights: (wx, wy, ww, wh); clip: a float, by default log(1000 / 16).
    Returns (R, 4) xyxy boxes with centre and size
        x = dx / wx * Pw + Px           w = exp(min(dw / ww, clip)) * Pw
        y = dy / wy * Ph + Py           h = exp(min(dh / wh, clip)) * Ph
    The clamp (only from above, after dividing by the weight) keeps exp from exploding on
    a wild prediction: a box grows at most 1000 / 16 = 62.5 times per side by default.
    """
    raise NotImplementedError("task (c): write decode")


# --- task (d) ----------------------------------------------------------------------------------
def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression, as torchvision.ops.nms.

    boxes: (R, 4) xyxy; scores: (R,); iou_threshold: float.  Visit the boxes by decreasing
    score (equal scores: lower index first); keep a box unless a box kept before it has
    IoU **strictly greater** than iou_threshold with it.  Returns the kept indices into
    ``boxes``, (K,) int64, in the order they were kept (decreasing score). R may be 0: then
    return an empty int64 array.
    """
    raise NotImplementedError("task (d): write nms")
