"""Exercise 05 -- the box and mask heads: detections, pasted masks, mask targets, the losses and their gradients.

Fill in the six graded functions below (tasks a-f in README.md) with NumPy only, then run

    mrcnn-np check 05                      # grades this file
    mrcnn-np check 05 --path my_copy.py    # grades your copy
    mrcnn-np check 05 --hint               # one more hint for the first task that does not pass

Conventions (torchvision's): arrays are float64 in the grader; boxes are absolute xyxy
pixels (x1, y1, x2, y2; width x2 - x1, no "+ 1"); an image shape is (height, width).
Shapes: R proposals (RoIs), K classes including the background (class 0), D detections,
M the mask size (28 in Mask R-CNN), G ground-truth objects, an H x W image.

The helpers (nms, resize_bilinear) are not graded on their own: use them, or not. You may
paste your ``nms`` (and ``box_iou``) from exercise 02 and your RoIAlign from exercise 04.
"""

import math

import numpy as np  # noqa: F401  (you will need it)

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # the clamp of dw, dh in decode: a box grows at most 62.5x
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # the box head's BoxCoder weights (wx, wy, ww, wh)
SMOOTH_L1_BETA = 1.0 / 9  # the box loss's beta (torchvision's fastrcnn_loss)


# --- task (a) ----------------------------------------------------------------------------------
def nms(boxes, scores, iou_threshold):
    """(helper for task a) Greedy non-maximum suppression, as in exercise 02.

    boxes: (R, 4) xyxy; scores: (R,). Returns the kept indices (K,) int64 by decreasing score
    (equal scores: lower index first); a box is suppressed when its IoU with an already
    kept box is > iou_threshold (strictly).
    """
    raise NotImplementedError("helper for task (a): write nms (or paste yours from exercise 02)")


def postprocess_detections(class_logits, box_regression, proposals, image_shape, score_thresh=0.05,
                           nms_thresh=0.5, detections_per_img=100):
    """The detections of ONE image: torchvision's ``RoIHeads.postprocess_detections``.

    class_logits: (R, K) the box head's class scores (logits), class 0 the background;
    box_regression: (R, 4K) class-specific deltas, columns 4k..4k+3 = (dx, dy, dw, dh) of class k;
    proposals: (R, 4) xyxy, the boxes the deltas are relative to; image_shape: (height, width).
    Returns ``(boxes, scores, labels)``: (D, 4) boxes, (D,) scores and (D,) int64 labels (1..K-1),
    one detection per surviving (proposal, class >= 1) pair, where
      - the score is the softmax over the K classes of the proposal's logits;
      - the box is the proposal's class-k deltas decoded as in exercise 02, with the weights
        BOX_WEIGHTS (10, 10, 5, 5) and dw / ww, dh / wh clamped from above at BBOX_XFORM_CLIP,
        then clipped to the image (x to [0, width], y to [0, height]);
      - a pair survives when its score is > score_thresh (strictly), its clipped box is at least
        1e-2 wide and high, and no box of the same class with a higher score (or an equal score
        and an earlier pair) overlaps it with IoU > nms_thresh; classes never suppress each other;
      - the detections are ordered by decreasing score, equal scores in the order of the pairs
        proposal-major (pair r * (K - 1) + k - 1), and at most detections_per_img are returned.
    Nothing may survive: then return (0, 4), (0,) and (0,) arrays.
    """
    raise NotImplementedError("task (a): write postprocess_detections")


# --- task (b) ----------------------------------------------------------------------------------
def resize_bilinear(image, out_h, out_w):
    """(helper for task b) Resize a 2-D array as torch's F.interpolate(mode="bilinear", align_corners=False).

    image: (h, w). Returns (out_h, out_w): output pixel d of an axis reads the input at the
    point where its centre falls, (d + 0.5) * in_size / out_size - 0.5 (clamped at 0 from below,
    and at the last pixel from above), blending the two input pixels around it by nearness;
    separable: along x, then along y.
    """
    raise NotImplementedError("helper for task (b): write resize_bilinear")


def paste_masks_in_image(masks, boxes, image_shape, padding=1):
    """Paste each box's mask into an image-sized canvas: torchvision's ``paste_masks_in_image``.

    masks: (R, 1, M, M) mask probabilities; boxes: (R, 4) xyxy in the image's pixels;
    image_shape: (H, W); padding: int.
    Returns (R, 1, H, W): canvas r is zero except inside box r, where it holds mask r padded with
    ``padding`` zeros on every side and resized bilinearly (align_corners=False) to the box
    grown by (M + 2 padding) / M about its centre. The grown box's corners are truncated towards
    0 (as torch's ``.to(torch.int64)``: -3.7 -> -3), it covers both its end pixels (x2 - x1 + 1
    columns, at least 1), and the part of it outside the image is left out. torchvision computes
    the half-size as (x2 - x1) * 0.5 * scale and the centre as (x2 + x1) * 0.5: keep that order
    of operations, truncation turns a rounding difference into a pixel.
    R may be 0: then return a (0, 1, H, W) array.
    """
    raise NotImplementedError("task (b): write paste_masks_in_image")


# --- task (c) ----------------------------------------------------------------------------------
def mask_targets(gt_masks, proposals, matched_idxs, M=28):
    """The mask head's training targets: torchvision's ``project_masks_on_boxes``.

    gt_masks: (G, H, W) uint8 0/1 ground-truth masks of one image; proposals: (R, 4) xyxy
    positive proposals; matched_idxs: (R,) int64, the ground-truth object each proposal
    matched (an index into gt_masks); M: int, the mask size.
    Returns (R, M, M) float64: for each proposal, RoIAlign of its matched mask (as float)
    into the proposal, with output (M, M), spatial_scale 1, sampling_ratio -1 (adaptive:
    ceil(roi_h / M) x ceil(roi_w / M) points per bin) and aligned=False (a box is at least
    1 x 1 pixel). Values are fractions in [0, 1], not thresholded. R may be 0.
    """
    raise NotImplementedError("task (c): write mask_targets")


# --- task (d) ----------------------------------------------------------------------------------
def mask_loss(mask_logits, labels, mask_targets):
    """The mask loss: torchvision's ``maskrcnn_loss`` once the targets are made.

    mask_logits: (R, K, M, M) the mask head's logits, one M x M mask per class;
    labels: (R,) int64 the ground-truth class of each positive RoI (1..K-1);
    mask_targets: (R, M, M) from task (c).
    Returns a float: torch's F.binary_cross_entropy_with_logits (reduction "mean", over the
    R x M x M pixels) between each RoI's ground-truth class channel, mask_logits[r, labels[r]],
    and its target (Mask R-CNN, sec. 3: a per-pixel sigmoid, only the ground-truth class's mask
    is trained); finite for logits as large as +-50, where the naive log(1 - sigmoid(50)) is
    log(0) in floating point; 0.0 when R = 0 (no positive RoI).
    """
    raise NotImplementedError("task (d): write mask_loss")


# --- task (e) ----------------------------------------------------------------------------------
def box_loss_backward(box_regression, labels, regression_targets):
    """The gradient of the box regression loss with respect to box_regression.

    box_regression: (R, 4K) the box head's class-specific deltas of the R sampled RoIs of a batch
    (the images' RoIs concatenated), columns 4k..4k+3 for class k; labels: (R,) int64, each
    RoI's class, 0 for the background; regression_targets: (R, 4) each RoI's encoded target
    (exercise 02's encode with the weights 10, 10, 5, 5).
    The loss is torchvision's ``fastrcnn_loss`` box loss: the smooth L1 loss with beta =
    SMOOTH_L1_BETA (1/9), 0.5 d^2 / beta where |d| < beta and |d| - 0.5 beta elsewhere, of the
    difference d between prediction and target, over the 4 coordinates of each positive RoI's
    (label > 0) ground-truth class box, summed, then divided by R, the number of sampled RoIs
    (background included).
    Returns (R, 4K) float64: d loss / d box_regression; zero on the background's rows and on
    the columns of the other classes. R may be 0.
    """
    raise NotImplementedError("task (e): write box_loss_backward")


# --- task (f) ----------------------------------------------------------------------------------
def mask_loss_backward(mask_logits, labels, mask_targets):
    """The gradient of task (d)'s mask loss with respect to the mask logits.

    mask_logits: (R, K, M, M); labels: (R,) int64 (1..K-1); mask_targets: (R, M, M): as in task (d).
    Returns (R, K, M, M) float64: d mask_loss / d mask_logits; zero on every channel but each
    RoI's ground-truth class; finite for logits as large as +-50. R may be 0: then return a
    (0, K, M, M) array (torchvision's loss is mask_logits.sum() * 0, whose gradient is 0).
    """
    raise NotImplementedError("task (f): write mask_loss_backward")
