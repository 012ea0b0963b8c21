"""The classic mistakes of exercise 07, each declared once (how the grader uses them: exercises/README.md)."""

BUFFER = "v = d.copy() if velocities is None else momentum * velocities[i] + d"
UPDATE = "new_params.append(p - lr * v)"
DECAY = "d = g + weight_decay * p"
RAMP = "progress = min(iteration, warmup_iters) / warmup_iters"
PASSED = "passed = sum(1 for m in milestones if m <= iteration)"
PRODUCT = "return base_lr * warm * gamma**passed"
ENVELOPE = "precision = np.maximum.accumulate(precision[::-1])[::-1]"
AT_LEAST = "if overlaps[d, g] < best:"
ONCE = "continue  # an object is found once"
IGNORED = "ignored[d] = True  # on a crowd region"
RECALL = "recall = tp_sum / np.count_nonzero(~gt_iscrowd)"

MISTAKES = {
    "sgd_momentum_step": [
        ("the paper's momentum, lr inside the velocity",
         [(BUFFER, "v = lr * d if velocities is None else momentum * velocities[i] + lr * d"),
          (UPDATE, "new_params.append(p - v)")],
         "torch.optim.SGD keeps lr out of the buffer: v = momentum * v + d, then p - lr * v. The form of the "
         "papers (v = momentum * v + lr * g, p - v) takes the same steps only while lr is constant; in a warm-up "
         "or at a milestone they differ, and the buffer torch saves (and resumes from) holds no lr"),
        ("weight decay added after the momentum",
         [(DECAY, "d = g"), (UPDATE, "new_params.append(p - lr * (v + weight_decay * p))")],
         "torch adds weight_decay * p to the gradient before it enters the momentum buffer, so the decay is "
         "carried by the momentum too (decoupled weight decay, as in AdamW, is another optimiser)"),
        ("dampened momentum: an average instead of a sum",
         [(BUFFER, "v = d.copy() if velocities is None else momentum * velocities[i] + (1 - momentum) * d")],
         "torch's dampening is 0 by default: v = momentum * v + d, a running sum whose steps reach about "
         "1 / (1 - momentum) times the gradient, not an average of the gradients"),
    ],
    "warmup_lr": [
        ("the warm-up counted from 1", [(RAMP, "progress = min(iteration + 1, warmup_iters) / warmup_iters")],
         "iteration 0 uses warmup_factor * base_lr: the lr of iteration t is the optimiser's after t scheduler "
         "steps, and LinearLR reaches base_lr at iteration warmup_iters, not one before"),
        ("the lr drops one iteration after a milestone",
         [(PASSED, "passed = sum(1 for m in milestones if m < iteration)")],
         "MultiStepLR multiplies by gamma when its step count reaches the milestone: iteration m itself already "
         "uses the lower lr"),
        ("the decay left out during the warm-up",
         [(PRODUCT, "return base_lr * (warm if iteration < warmup_iters else gamma**passed)")],
         "the two schedules are chained: their factors multiply at every iteration, so a milestone inside the "
         "warm-up scales the ramp too"),
    ],
    "average_precision": [
        ("no precision envelope", [(ENVELOPE, "precision = precision + 0  # no envelope")],
         "COCO interpolates: the precision at a recall level is the best precision at that recall or any higher "
         "one (a running maximum from the end of the list), so the curve never goes up again"),
        ("strict > at the threshold", [(AT_LEAST, "if overlaps[d, g] <= best:")],
         "a detection whose IoU is exactly iou_threshold matches (COCOeval skips an object only when the IoU is "
         "below it)"),
        ("a found object found again", [(ONCE, "pass  # an object is found once")],
         "an object is matched at most once, by the highest-scoring detection that overlaps it enough; a later "
         "detection of it (a duplicate) is a false positive, unless another free object matches it"),
        ("detections on crowd regions counted as false positives", [(IGNORED, "pass  # on a crowd region")],
         "a detection matched to a crowd region (iscrowd: overlap = intersection / detection area) is ignored: "
         "left out of the ranking, neither a hit nor a false positive"),
        ("crowd regions counted in the recall", [(RECALL, "recall = tp_sum / len(gt_iscrowd)")],
         "recall is over the objects only: crowd regions are not objects to be found, leave them out of the "
         "denominator"),
    ],
}
