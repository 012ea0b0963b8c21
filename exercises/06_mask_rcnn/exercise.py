"""Exercise 06 -- the whole Mask R-CNN: the transform, boxes back to the image, inference wired from
the stages, and the first stage where two runs disagree.

Fill in the four graded functions below (tasks a-d in README.md) with NumPy only, then run

    mrcnn-np check 06                      # grades this file
    mrcnn-np check 06 --path my_copy.py    # grades your copy
    mrcnn-np check 06 --hint               # one more hint for the first task that does not pass

Conventions (torchvision's): arrays are float64 in the grader; boxes are absolute xyxy pixels
(x1, y1, x2, y2); an image size is (height, width). N images, C channels, D detections.

The helper resize_bilinear is not graded on its own: use it, or not (you may paste yours from
exercise 05 and extend it to C channels).
"""

import math  # noqa: F401  (you may need it)

import numpy as np  # noqa: F401  (you will need it)


# --- task (a) ----------------------------------------------------------------------------------
def resize_bilinear(image, out_h, out_w):
    """(helper for task a) Resize (C, h, w) to (C, out_h, out_w) as torch's
    F.interpolate(mode="bilinear", align_corners=False).

    Output pixel d of an axis reads the input at (d + 0.5) * in_size / out_size - 0.5 (clamped
    at 0 from below, at the last pixel from above), blending the two input pixels around it by
    nearness; separable: along x, then along y; every channel alike.
    """
    raise NotImplementedError("helper for task (a): write resize_bilinear")


def transform(images, min_size, max_size, image_mean, image_std, size_divisible=32):
    """Images into one batch: torchvision's ``GeneralizedRCNNTransform`` at inference.

    images: a list of N float64 arrays (C, H_i, W_i) in [0, 1]; min_size, max_size: ints;
    image_mean, image_std: C floats each; size_divisible: int.
    Returns ``(batch, image_sizes)``:
      - each image is normalised per channel, (x - mean) / std, and resized bilinearly
        (align_corners=False) by the scale min(min_size / shorter side, max_size / longer side)
        to floor(H_i * scale) x floor(W_i * scale) pixels (torch's recompute_scale_factor=True: the
        resampling reads the input at the ratio of the sizes, not at the scale itself);
      - image_sizes: a list of N (h_i, w_i) int pairs, the resized sizes;
      - batch: (N, C, H', W') float64, image i at the top left of slot i, zeros elsewhere (zero in
        the normalised units); H' and W' are the largest h_i and w_i, each rounded up to a
        multiple of size_divisible.
    """
    raise NotImplementedError("task (a): write transform")


# --- task (b) ----------------------------------------------------------------------------------
def boxes_to_original(boxes, image_size, original_size):
    """Detections back to the image the user gave: the boxes' part of torchvision's
    ``GeneralizedRCNNTransform.postprocess`` (``resize_boxes``).

    boxes: (D, 4) float64 xyxy in the resized image's pixels; image_size: (h, w) of the resized
    image (before padding); original_size: (H, W) of the original image.
    Returns (D, 4) float64: x scaled by W / w and y by H / h, each ratio computed in float32 as
    torchvision does (the quotient of two float32 sizes) and applied to the float64 boxes.
    D may be 0.
    """
    raise NotImplementedError("task (b): write boxes_to_original")


# --- task (c) ----------------------------------------------------------------------------------
def predict_from_stages(model, images):
    """Inference wired by hand: what ``MaskRCNN.predict(images)`` returns, from the model's stages.

    model: the stages of a mrcnn_np ``MaskRCNN`` in eval mode (its ``predict`` is not there), as
    attributes:
      - ``model.transform``: the GeneralizedRCNNTransform; called on images (keyword ``dtype``) it
        gives ``(ImageList, None)``, an ImageList holding ``tensors`` (N, 3, H', W'),
        ``image_sizes`` and ``original_sizes``; its method ``postprocess`` (results, image sizes,
        original sizes, keyword ``to_host``) maps detections back to the original images;
      - ``model.backbone``: ResNet + FPN, padded batch -> dict of feature maps "0".."3", "pool";
      - ``model.rpn``: its method ``predict(padded_size, image_sizes, features)`` gives
        (proposals per image, their scores);
      - ``model.roi_heads``: its method ``predict(features, proposals, image_sizes)`` gives one
        dict per image (boxes, labels, scores in the resized image, masks (D, 1, 28, 28));
      - ``model.dtype``: the weights' dtype (float64 here), which the batch must have.
    images: a list of (H_i, W_i, 3) float64 arrays in [0, 1].
    Returns a list of N dicts with ``boxes`` (D, 4), ``labels`` (D,), ``scores`` (D,) and ``masks``
    (D, 1, H_i, W_i), host NumPy arrays in the original image's pixels, equal to what
    ``MaskRCNN.predict`` returns (and torchvision's MaskRCNN with the same weights).
    You call the library's stages here, through ``model``: this task is about the wiring.
    """
    raise NotImplementedError("task (c): write predict_from_stages")


# --- task (d) ----------------------------------------------------------------------------------
def first_disagreement(stages_a, stages_b, atol):
    """Where two runs part: the first stage at which ``stages_b`` disagrees with ``stages_a``.

    stages_a, stages_b: dicts stage name -> array (any shape), e.g. the intermediate results of
    two models, or of one model in float32 and float64; the order is the order of stages_a
    (the order the stages ran in); atol: float >= 0.
    Returns ``(name, error)``, the first stage of stages_a whose error is > atol (strictly) and its
    error, where a stage's error is the largest absolute difference between its two arrays
    (0.0 for empty arrays); NaN at the same place in both agrees, NaN in one only is an error of
    inf; a stage missing from stages_b, or of another shape there, has error inf (math.inf).
    When every stage agrees: ``(None, the largest error of all stages)``.
    """
    raise NotImplementedError("task (d): write first_disagreement")
