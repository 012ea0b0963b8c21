"""Exercise 07 -- training and evaluation: SGD with momentum, the warm-up schedule, COCO's average precision.

Fill in the three graded functions below (tasks a-c in README.md) with NumPy only, then run

    mrcnn-np check 07                      # grades this file
    mrcnn-np check 07 --path my_copy.py    # grades your copy
    mrcnn-np check 07 --hint               # one more hint for the first task that does not pass

Conventions: arrays are float64 in the grader. Iterations count from 0. Boxes are
``x1, y1, x2, y2`` in image pixels (width x2 - x1, no "+ 1"), as torchvision's; pycocotools
reads the same boxes as ``x, y, width, height``.
"""

import numpy as np  # noqa: F401  (you will need it)


# --- task (a) ----------------------------------------------------------------------------------
def sgd_momentum_step(params, grads, velocities, lr, momentum, weight_decay):
    """One step of torch.optim.SGD(lr, momentum, weight_decay, dampening=0, nesterov=False) on each array.

    params, grads: lists of float64 arrays, one per parameter (each gradient of its parameter's
    shape); velocities: torch's momentum buffers (``optimizer.state[p]["momentum_buffer"]``) of
    the previous step, a list like params, or None before the first step (torch has no buffer
    yet); lr, momentum (in (0, 1)) and weight_decay (>= 0): floats.
    Returns (new_params, new_velocities): two lists of float64 arrays of the parameters' shapes,
    the parameters after torch.optim.SGD's step and its momentum buffers after that step.
    PyTorch's formulation, not the paper's (they place the learning rate differently; the
    hints and torch.optim.SGD's documentation give the rule). The grader runs several steps,
    feeding your results back, with the lr changing between steps as a schedule does.
    Do not rely on changing the inputs in place: the grader passes copies.
    """
    raise NotImplementedError("task (a): write sgd_momentum_step")


# --- task (b) ----------------------------------------------------------------------------------
def warmup_lr(iteration, base_lr, warmup_iters, warmup_factor, milestones, gamma):
    """The learning rate iteration ``iteration`` trains with, in mrcnn_np.train's recipe.

    iteration: int >= 0; base_lr: float; warmup_iters: int >= 0 (0: no warm-up); warmup_factor:
    float in (0, 1]; milestones: a tuple of increasing ints; gamma: float.
    Returns a float: base_lr times the product of two factors, the schedules of torch's
    LinearLR(optimizer, start_factor=warmup_factor, end_factor=1, total_iters=warmup_iters) and
    MultiStepLR(optimizer, milestones, gamma) chained (ChainedScheduler), read from the optimiser
    before the scheduler's step of that iteration: iteration t trains with the lr after t
    scheduler steps. The warm-up factor grows linearly from warmup_factor at
    iteration 0 to 1 at iteration warmup_iters, and stays 1; the decay factor is gamma to the
    power of the number of milestones reached. mrcnn_np.nn.optim.WarmupMultiStepLR is the
    library's version.
    """
    raise NotImplementedError("task (b): write warmup_lr")


# --- task (c) ----------------------------------------------------------------------------------
def average_precision(boxes, scores, image_ids, gt_boxes, gt_image_ids, gt_iscrowd, iou_threshold):
    """COCO's average precision of one class at one IoU threshold, as pycocotools' COCOeval (bbox).

    boxes: (D, 4) xyxy detections (D >= 1), of any images; scores: (D,) their scores; image_ids:
    (D,) ints, the image of each. gt_boxes: (G, 4) xyxy ground truth; gt_image_ids: (G,) ints;
    gt_iscrowd: (G,) bools, True for a crowd region (at least one box is not a crowd region).
    iou_threshold: a float in [0.5, 0.95].
    Returns a float in [0, 1]: COCOeval's AP for this one class at this one IoU threshold, iouType
    "bbox", area range "all", maxDets 100 (only each image's 100 highest-scoring detections
    count), crowd regions handled as COCOeval handles them (a crowd region is never an object to
    find, and a detection it absorbs is neither a hit nor a false positive) -- the number
    pycocotools prints as AP50 (AP75) for a single class at 0.5 (0.75).
    Edge cases: an IoU exactly at the threshold matches; an image with objects but no
    detections lowers the recall; detections on an image without objects are false positives
    (unless a crowd region absorbs them); detections that all miss give 0.0. Images are all
    the ids in image_ids and gt_image_ids. Equal scores rank the detection of the smaller image
    id first, ties within an image in the input's order. Lin et al., "Microsoft COCO" (2014);
    pycocotools' cocoeval.py (evaluateImg, accumulate).
    """
    raise NotImplementedError("task (c): write average_precision")
