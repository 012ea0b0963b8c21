"""Progressive hints of exercise 07, revealed one at a time by ``mrcnn-np check 07 --hint``."""

HINTS = {
    "sgd_momentum_step": [
        "Read the update rule in torch.optim.SGD's documentation (the pseudo-code box) or the\n"
        "docstring of mrcnn_np/nn/optim.py's SGD: three lines per parameter, in a fixed order.",
        "Per parameter: first fold weight decay into the gradient (d = g + weight_decay * p), then\n"
        "update the buffer with d (momentum times the old buffer, plus d; on the first step the\n"
        "buffer is d itself), then move p by lr times the buffer. lr never enters the buffer (the\n"
        "paper's formulation puts it there). Weight decay is the gradient of (weight_decay / 2) |p|^2.",
        "Nearly in code, for each i:\n"
        "  d = grads[i] + weight_decay * params[i]\n"
        "  v = d.copy() if velocities is None else momentum * velocities[i] + d\n"
        "  new_params.append(params[i] - lr * v); new_velocities.append(v)\n"
        "and return (new_params, new_velocities).",
    ],
    "warmup_lr": [
        "Two factors multiply base_lr: a warm-up ramp and a step decay. Chapter 7.2 plots the\n"
        "schedule; mrcnn_np/nn/optim.py's WarmupMultiStepLR.factor is the closed form.",
        "Warm-up: with progress = min(iteration, warmup_iters) / warmup_iters (1 when warmup_iters\n"
        "is 0), the factor is warmup_factor + (1 - warmup_factor) * progress. Decay: gamma to the\n"
        "number of milestones m with m <= iteration (the drop happens at the milestone itself).",
        "Nearly in code:\n"
        "  warm = 1.0 if warmup_iters == 0 else warmup_factor + (1 - warmup_factor) * \\\n"
        "      min(iteration, warmup_iters) / warmup_iters\n"
        "  passed = sum(m <= iteration for m in milestones)\n"
        "  return base_lr * warm * gamma ** passed",
    ],
    "average_precision": [
        "Two stages, as in pycocotools' cocoeval.py: evaluateImg matches detections to objects\n"
        "image by image; accumulate ranks every detection by score and reads precision at 101\n"
        "recall levels. Chapter 7.5 describes both.",
        "Per image (ascending id): sort its detections by decreasing score with a stable sort and\n"
        "keep 100; put its objects before its crowd regions; compute the (D, G) overlaps (IoU;\n"
        "intersection / detection area for a crowd column). Each detection in turn: the best\n"
        "column with overlap >= threshold, skipping objects already taken, and stopping at the\n"
        "crowd columns once an object is matched. Object: a hit (take it); crowd: ignored (a\n"
        "crowd region absorbs any number of detections); none: a false positive.",
        "Then, over all images together:\n"
        "  order = np.argsort(-all_scores, kind='stable'); drop the ignored detections\n"
        "  tp = np.cumsum(hit); fp = np.cumsum(~hit)\n"
        "  recall = tp / number of non-crowd objects; precision = tp / (tp + fp)\n"
        "  precision = np.maximum.accumulate(precision[::-1])[::-1]   # the envelope\n"
        "  idx = np.searchsorted(recall, np.linspace(0, 1, 101), side='left')\n"
        "  AP = mean of precision[idx] where idx < len(precision), 0 elsewhere\n"
        "Recall counts the objects only, not the crowd regions; the interpolated precision at a\n"
        "recall level is the best precision at that recall or any higher one (0 if never reached).",
    ],
}
