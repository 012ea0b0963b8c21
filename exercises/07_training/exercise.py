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
    """One step of torch.optim.SGD(lr, momentum, weight_decay) (dampening 0, no Nesterov).

    params, grads: lists of float64 arrays, one per parameter (each gradient of its parameter's
    shape); velocities: the momentum buffers of the previous step (a list like params), or None
    before the first step; lr, momentum (in (0, 1)) and weight_decay (>= 0): floats.
    Returns (new_params, new_velocities): two lists of arrays of the parameters' shapes, the
    parameters after the step and the momentum buffers torch.optim.SGD keeps in its state
    (``optimizer.state[p]["momentum_buffer"]``) after it.
    PyTorch's formulation, not the paper's: weight decay is the gradient of
    (weight_decay / 2) |p|^2, added to the loss's gradient; the buffer is a running sum of those
    gradients with decay factor momentum and no learning rate in it (its first value is the first
    such gradient); the learning rate scales the buffer in the update. The grader runs several
    steps, feeding your results back, with the lr changing between steps as a schedule does.
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
    Returns a float in [0, 1]: COCOeval's AP for this class at this threshold, area "all", at
    most 100 detections per image (maxDets = 100: each image's highest-scoring ones):
      - matching is greedy, per image, by decreasing score: a detection takes the unmatched
        object it overlaps most, if their IoU is at least iou_threshold (exactly the threshold
        counts); an object is matched once; failing an object, a crowd region it overlaps by at
        least the threshold (intersection / the detection's own area) makes the detection
        ignored -- a crowd region can absorb any number of detections;
      - matched detections are hits, the others false positives, the ignored ones are left out;
      - ranking every image's detections together by score, precision and recall (over the
        objects, not the crowd regions) after each detection give a precision-recall curve;
      - AP is the mean, over the 101 recall levels np.linspace(0, 1, 101), of the interpolated
        precision: the best precision reached at that recall level or any higher one (0 where
        the recall level is never reached).
    Ties in score rank the detection of the smaller image id first, then by the input's order.
    Images are all the ids in image_ids and gt_image_ids. Lin et al., "Microsoft COCO" (2014);
    pycocotools' cocoeval.py (evaluateImg, accumulate).
    """
    raise NotImplementedError("task (c): write average_precision")
