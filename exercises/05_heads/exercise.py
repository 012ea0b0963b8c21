"""Exercise 05 -- the box and mask heads: detections, pasted masks, mask targets and the mask loss.

Fill in the four graded functions below (tasks a-d in README.md) with NumPy only, then run

    mrcnn-np check 05                      # grades this file
    mrcnn-np check 05 --path my_copy.py    # grades your copy

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
    proposals: (R, 4) xyxy, the boxes the deltas are relative to;
    image_shape: (height, width).
    In this order:
      1. scores = softmax(class_logits) over the K classes of each proposal;
      2. decode every class's deltas against its proposal with weights BOX_WEIGHTS
         (10, 10, 5, 5) and dw / ww, dh / wh clamped from above at BBOX_XFORM_CLIP -> (R, K, 4);
      3. clip the boxes to the image: x to [0, width], y to [0, height];
      4. drop the background class, and flatten: every (proposal r, class k >= 1) pair is a
         candidate, candidate ``r * (K - 1) + (k - 1)`` (proposal-major);
      5. keep scores > score_thresh (strictly), and boxes whose width and height are both
         >= 1e-2;
      6. NMS with nms_thresh within each class (boxes of different classes never suppress
         each other);
      7. the survivors of all classes by decreasing score (equal scores: the earlier
         candidate of step 4 first), at most detections_per_img of them.
    Returns ``(boxes, scores, labels)``: (D, 4) clipped boxes, (D,) softmax scores and (D,)
    int64 class indices (1..K-1); (0, 4), (0,) and (0,) when nothing survives.
    """
    raise NotImplementedError("task (a): write postprocess_detections")


# --- task (b) ----------------------------------------------------------------------------------
def resize_bilinear(image, out_h, out_w):
    """(helper for task b) Resize a 2-D array, as torch's F.interpolate(mode="bilinear",
    align_corners=False).

    image: (h, w). Returns (out_h, out_w). Along each axis, with scale = in_size / out_size,
    output pixel d reads the input at ``src = max((d + 0.5) * scale - 0.5, 0)``: with
    ``low = int(src)``, ``high = min(low + 1, in_size - 1)`` and ``frac = src - low``, the value
    ``(1 - frac) * signal[low] + frac * signal[high]``. Resize along x, then along y.
    """
    raise NotImplementedError("helper for task (b): write resize_bilinear")


def paste_masks_in_image(masks, boxes, image_shape, padding=1):
    """Paste each box's mask into an image-sized canvas: torchvision's ``paste_masks_in_image``.

    masks: (R, 1, M, M) mask probabilities; boxes: (R, 4) xyxy in the image's pixels;
    image_shape: (H, W); padding: int. For each mask and box:
      1. pad the mask with ``padding`` zeros on every side -> (M + 2p, M + 2p);
      2. grow the box about its centre by scale = (M + 2p) / M, as torchvision computes it:
         half_w = (x2 - x1) * 0.5 * scale, centre x = (x2 + x1) * 0.5 (the same along y);
      3. truncate the grown box's corners to integers (towards 0, like int());
      4. resize the padded mask bilinearly (align_corners=False) to h x w with
         w = max(x2 - x1 + 1, 1), h = max(y2 - y1 + 1, 1) (both end pixels included);
      5. write it at rows y1..y2, columns x1..x2 of a zero (H, W) canvas, leaving out what
         falls outside the image.
    Returns (R, 1, H, W). R may be 0: then return a (0, 1, H, W) array.
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
    Returns a float: the mean over the R x M x M pixels of
        BCE-with-logits(mask_logits[r, labels[r]], mask_targets[r])
        = max(x, 0) - x * t + log(1 + exp(-|x|))
    on the ground-truth class's channel only; 0.0 when R = 0 (no positive RoI).
    """
    raise NotImplementedError("task (d): write mask_loss")
