"""Grader of exercise 07: the learner's functions against mrcnn_np, pycocotools and, when installed, torch.

Every task runs fixed float64 cases. sgd_momentum_step is run for several steps, its own
parameters and momentum buffers fed back, and compared step by step with ``mrcnn_np.nn.optim.SGD``
and ``torch.optim.SGD`` on the same gradients and learning rates; warmup_lr over whole runs with
``mrcnn_np.nn.optim.WarmupMultiStepLR`` and torch's ``LinearLR`` chained with ``MultiStepLR``;
average_precision with pycocotools' ``COCOeval`` (bbox) run directly, through
``mrcnn_np.evaluate.coco_evaluate`` (its AP50 and AP75), and with its IoUs computed by
``torchvision.ops.box_iou``. Everything to 1e-10 of the reference's largest value. When a result
is wrong in a way the grader recognises (the mistakes in ``mistakes.py``), the message ends with
a hint.
"""

import contextlib
import io

import numpy as np

from mrcnn_np.exercises import (
    Mistakes,
    Task,
    as_float_array,
    as_tuple,
    assert_close,
    assert_close_scalar,
    compare,
    copies,
    for_each_case,
    function,
    shape_str,
    torch_modules,
)
from mrcnn_np.exercises import call_learner as _call

STUB = "exercise.py"
RTOL = 1e-10
MISTAKES = Mistakes(__file__)


# --- task (a) ----------------------------------------------------------------------------------
def _sgd_cases():
    """(label, params, grads per step, initial velocities or None, lrs per step, momentum, weight_decay)."""
    rng = np.random.default_rng(70)
    shapes = [(4, 3, 3, 3), (4,), (2, 5)]  # a conv weight, its bias, a small fc weight

    def draw(steps):
        params = [rng.standard_normal(s) for s in shapes]
        grads = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
        return params, grads

    params, grads = draw(6)
    lrs = [0.02 * (0.001 + 0.999 * t / 5) for t in range(6)]  # a warm-up: the lr changes at every step
    yield ("first steps of a warm-up (no velocity yet), momentum 0.9, weight_decay 1e-4", params, grads, None, lrs,
           0.9, 1e-4)
    params, grads = draw(4)
    yield "constant lr 0.02, momentum 0.9, no weight decay", params, grads, None, [0.02] * 4, 0.9, 0.0
    params, grads = draw(5)
    velocities = [rng.standard_normal(s) for s in shapes]
    yield ("resumed (velocities given), the lr divided by 10 at step 2, momentum 0.5, weight_decay 0.05", params,
           grads, velocities, [0.1, 0.1, 0.01, 0.01, 0.01], 0.5, 0.05)


def _arrays(arrays, shapes, what):
    """The learner's list of one array per parameter, each checked to have its parameter's shape."""
    arrays = as_tuple(arrays, len(shapes), what, f"of {len(shapes)} arrays, one per parameter")
    return [as_float_array(a, s, f"{what}[{i}]") for i, (a, s) in enumerate(zip(arrays, shapes, strict=True))]


def _learner_trajectory(ex, fn, params, grads, velocities, lrs, momentum, weight_decay, what):
    """Run the learner's step for every lr, feeding its results back: (params (S, n), velocities (S, n))."""
    shapes = [p.shape for p in params]
    params_seen, velocities_seen = [], []
    for step, (g, lr) in enumerate(zip(grads, lrs, strict=True)):
        here = f"{what}, step {step} (lr {lr:.6g})"
        out = _call(ex, fn, copies((params, g, velocities, lr, momentum, weight_decay)), here)
        out = as_tuple(out, 2, here, "(params, velocities)")
        params, velocities = (_arrays(arrays, shapes, f"{here}: {name}")
                              for name, arrays in zip(("params", "velocities"), out, strict=True))
        params_seen.append(np.concatenate([p.reshape(-1) for p in params]))  # (n,) every parameter, flat
        velocities_seen.append(np.concatenate([v.reshape(-1) for v in velocities]))
    return np.stack(params_seen), np.stack(velocities_seen)  # (S, n) each


def _trajectory(fn, params, grads, velocities, lrs, momentum, weight_decay):
    """The same for a (broken) solution: (params (S, n), velocities (S, n))."""
    params_seen, velocities_seen = [], []
    for g, lr in zip(grads, lrs, strict=True):
        params, velocities = fn(copies(params), copies(g), copies(velocities), lr, momentum, weight_decay)
        params_seen.append(np.concatenate([np.ravel(p) for p in params]))
        velocities_seen.append(np.concatenate([np.ravel(v) for v in velocities]))
    return np.stack(params_seen), np.stack(velocities_seen)


def _library_sgd(params, grads, velocities, lrs, momentum, weight_decay):
    from mrcnn_np.nn.modules import Parameter
    from mrcnn_np.nn.optim import SGD

    tensors = [Parameter(p.copy()) for p in params]
    optimizer = SGD(tensors, lr=lrs[0], momentum=momentum, weight_decay=weight_decay)
    for p, v in zip(tensors, velocities or [], strict=False):
        optimizer.state[id(p)] = {"momentum_buffer": v.copy()}  # a resumed run
    params_seen, velocities_seen = [], []
    for g, lr in zip(grads, lrs, strict=True):
        optimizer.param_groups[0]["lr"] = lr  # what a schedule does between steps
        for p, gradient in zip(tensors, g, strict=True):
            p.grad = gradient.copy()
        optimizer.step()
        params_seen.append(np.concatenate([p.data.reshape(-1) for p in tensors]))
        velocities_seen.append(np.concatenate([optimizer.state[id(p)]["momentum_buffer"].reshape(-1)
                                               for p in tensors]))
    return np.stack(params_seen), np.stack(velocities_seen)


def _torch_sgd(torch, params, grads, velocities, lrs, momentum, weight_decay):
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    optimizer = torch.optim.SGD(tensors, lr=lrs[0], momentum=momentum, weight_decay=weight_decay)
    for p, v in zip(tensors, velocities or [], strict=False):
        optimizer.state[p]["momentum_buffer"] = torch.tensor(v)  # a resumed run
    params_seen, velocities_seen = [], []
    for g, lr in zip(grads, lrs, strict=True):
        optimizer.param_groups[0]["lr"] = lr
        for p, gradient in zip(tensors, g, strict=True):
            p.grad = torch.tensor(gradient)
        optimizer.step()
        params_seen.append(np.concatenate([p.detach().numpy().reshape(-1) for p in tensors]))
        velocities_seen.append(np.concatenate([optimizer.state[p]["momentum_buffer"].numpy().reshape(-1)
                                               for p in tensors]))
    return np.stack(params_seen), np.stack(velocities_seen)


def check_sgd_momentum_step(ex, label, params, grads, velocities, lrs, momentum, weight_decay):
    what = (f"sgd_momentum_step(params [{', '.join(shape_str(p.shape) for p in params)}], momentum={momentum}, "
            f"weight_decay={weight_decay}) [{label}]")
    case = (params, grads, velocities, lrs, momentum, weight_decay)
    got = _learner_trajectory(ex, function(ex, "sgd_momentum_step"), *case, what)

    def check(got, expected, name):  # step by step: the first step that differs is the one to look at
        for step in range(len(lrs)):
            for k, part in enumerate(("params", "velocities (the momentum buffers)")):
                assert_close(got[k][step], expected[k][step], f"{what}: {part} after step {step} (lr {lrs[step]:.6g}; "
                             f"steps count from 0) vs {name}", RTOL)

    refs = [("mrcnn_np.nn.optim.SGD", _library_sgd(*case))]
    modules, note = torch_modules("torch", "torchvision")
    if modules:
        refs.append(("torch.optim.SGD", _torch_sgd(modules[0], *case)))
    compare(got, refs, check, lambda expected: MISTAKES.hint(
        "sgd_momentum_step", got, expected, lambda f: _trajectory(f, *copies(case))))
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _schedule_cases():
    """(label, iterations, base_lr, warmup_iters, warmup_factor, milestones, gamma)."""
    yield "TrainRecipe's defaults: lr 0.005, 100 warm-up iterations, milestones (750, 920)", 1000, 0.005, 100, \
        0.001, (750, 920), 0.1
    yield "no warm-up (warmup_iters 0), gamma 0.5", 60, 0.02, 0, 0.001, (20, 40), 0.5
    yield "a milestone inside the warm-up", 60, 0.02, 30, 0.1, (10, 45), 0.1
    yield "a warm-up of one iteration", 8, 0.01, 1, 1 / 3, (3,), 0.1
    yield "a milestone where the warm-up ends, another after the run", 30, 0.02, 10, 0.001, (10, 100), 0.1


def _library_schedule(iterations, base_lr, warmup_iters, warmup_factor, milestones, gamma):
    from mrcnn_np.nn.modules import Parameter
    from mrcnn_np.nn.optim import SGD, WarmupMultiStepLR

    optimizer = SGD([Parameter(np.zeros(1))], lr=base_lr)
    scheduler = WarmupMultiStepLR(optimizer, milestones, gamma, warmup_factor, warmup_iters)
    lrs = []
    for _ in range(iterations):
        lrs.append(optimizer.param_groups[0]["lr"])  # the lr iteration t uses, as mrcnn_np.train reads it
        scheduler.step()
    return np.array(lrs)


def _torch_schedule(torch, iterations, base_lr, warmup_iters, warmup_factor, milestones, gamma):
    schedulers = torch.optim.lr_scheduler
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    chain = [schedulers.LinearLR(optimizer, warmup_factor, 1.0, warmup_iters)] if warmup_iters else []
    chain.append(schedulers.MultiStepLR(optimizer, list(milestones), gamma))
    scheduler = schedulers.ChainedScheduler(chain)
    lrs = []
    for _ in range(iterations):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # (no gradient: nothing moves; torch wants a step before the scheduler's)
        scheduler.step()
    return np.array(lrs)


def _learner_schedule(fn, iterations, *args):
    return [fn(t, *copies(args)) for t in range(iterations)]


def check_warmup_lr(ex, label, iterations, base_lr, warmup_iters, warmup_factor, milestones, gamma):
    args = (base_lr, warmup_iters, warmup_factor, milestones, gamma)
    what = (f"warmup_lr(iteration, base_lr={base_lr}, warmup_iters={warmup_iters}, warmup_factor={warmup_factor:.6g}, "
            f"milestones={milestones}, gamma={gamma}) for iteration 0..{iterations - 1} [{label}]")
    fn = function(ex, "warmup_lr")
    got = np.empty(iterations)
    for t in range(iterations):
        here = what.replace("(iteration,", f"({t},", 1).replace(f" for iteration 0..{iterations - 1}", "")
        value = _call(ex, fn, copies((t, *args)), here)
        value = as_float_array(value, (), f"{here}: expected one float")
        got[t] = value

    def check(got, expected, name):
        allowed = RTOL * np.abs(expected).max()
        bad = np.flatnonzero(~(np.abs(got - expected) <= allowed))  # (NaN is never close)
        first = (f"; the first iteration that differs is {bad[0]}: expected {expected[bad[0]]:.6g}, "
                 f"got {got[bad[0]]:.6g}" if len(bad) else "")
        assert_close(got, expected, f"{what} vs {name}", RTOL, lambda t: f"iteration {t}{first}")

    refs = [("mrcnn_np.nn.optim.WarmupMultiStepLR", _library_schedule(iterations, *args))]
    modules, note = torch_modules("torch", "torchvision")
    if modules:
        refs.append(("torch's LinearLR chained with MultiStepLR", _torch_schedule(modules[0], iterations, *args)))
    compare(got, refs, check, lambda expected: MISTAKES.hint("warmup_lr", got, expected, lambda f: _learner_schedule(
                f, iterations, *args)))
    return note


# --- task (c) ----------------------------------------------------------------------------------
def _ap_cases():
    """(label, boxes (D, 4), scores (D,), image_ids (D,), gt_boxes (G, 4), gt_image_ids (G,), gt_iscrowd (G,),
    iou_threshold)."""
    # by hand, integer corners: IoU exactly 0.5 (d0 on g0) and 0.75 (d1 on g1), a duplicate, an image without objects
    gt = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 70, 80]], dtype=np.float64)
    dets = np.array([[0, 0, 10, 5], [20, 20, 40, 35], [0, 0, 10, 10], [100, 100, 120, 120], [50, 50, 70, 80],
                     [52, 50, 70, 80], [0, 0, 5, 5]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.6, 0.85, 0.75])
    det_images, gt_images, no_crowd = np.array([1, 1, 1, 2, 2, 2, 3]), np.array([1, 1, 2]), np.zeros(3, dtype=bool)
    for t in (0.5, 0.75):
        yield (f"by hand: IoU exactly 0.5 and 0.75, a duplicate, an image without objects, IoU {t}", dets, scores,
               det_images, gt, gt_images, no_crowd, t)
    # crowd regions: detections inside them are ignored, one across an object and a crowd is a false positive
    gt = np.array([[10, 10, 50, 50], [60, 0, 120, 60], [0, 0, 30, 30], [40, 40, 90, 90]], dtype=np.float64)
    crowd = np.array([False, True, False, True])
    dets = np.array([[65, 5, 80, 20], [70, 30, 90, 50], [12, 10, 50, 52], [50, 0, 90, 40], [30, 10, 70, 50],
                     [1, 0, 30, 31], [45, 45, 60, 60], [200, 0, 230, 30]], dtype=np.float64)
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.88, 0.5, 0.97, 0.7])
    yield ("crowd regions: detections inside them ignored, IoU 0.5", dets, scores, np.array([1, 1, 1, 1, 1, 2, 2, 2]),
           gt, np.array([1, 1, 2, 2]), crowd, 0.5)
    rng = np.random.default_rng(71)
    yield ("random: 8 images, jittered and duplicate detections, clutter, two crowd regions, IoU 0.5",
           *_random_detections(rng), 0.5)
    yield ("random: the same, IoU 0.75", *_random_detections(np.random.default_rng(71)), 0.75)
    yield ("tied scores, across images and within one", *_tied_detections(), 0.5)
    yield ("130 detections on one image: only its 100 best count", *_crowded_image(np.random.default_rng(72)), 0.5)
    boxes, scores, images, gt, gt_images, crowd = _random_detections(np.random.default_rng(73))
    yield ("every detection misses: AP 0", boxes + 500, scores, images, gt, gt_images, crowd, 0.5)


def _boxes(rng, n, low=0.0, high=200.0, size=(10.0, 80.0)):
    xy = rng.uniform(low, high, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(*size, (n, 2))], axis=1)  # (n, 4)


def _random_detections(rng):
    """Objects on images 1..7 (none on 8), two crowd regions, jittered copies, duplicates and clutter."""
    counts = [3, 5, 1, 4, 0, 6, 2, 0]
    gt_images = np.repeat(np.arange(1, 9), counts)  # (G,)
    gt = _boxes(rng, len(gt_images))  # (G, 4)
    crowd = np.zeros(len(gt), dtype=bool)
    crowd[[1, 9]] = True
    near = rng.integers(0, len(gt), 40)  # the object each of 40 detections is a noisy copy of
    sides = np.concatenate([gt[near, 2:] - gt[near, :2]] * 2, axis=1)  # (40, 4) w, h, w, h
    jitter = gt[near] + rng.normal(0, 0.08, (40, 4)) * sides
    jitter = np.concatenate([np.minimum(jitter[:, :2], jitter[:, 2:] - 1), np.maximum(jitter[:, 2:],
                                                                                       jitter[:, :2] + 1)], axis=1)
    clutter = _boxes(rng, 15)
    boxes = np.concatenate([jitter, clutter])  # (55, 4)
    images = np.concatenate([gt_images[near], rng.integers(1, 9, 15)])  # (55,)
    return boxes, rng.uniform(0.05, 1.0, len(boxes)), images, gt, gt_images, crowd


def _tied_detections():
    """Equal scores: a false positive on image 1 and a hit on image 2, a hit and a duplicate on image 3."""
    gt = np.array([[0, 0, 20, 20], [0, 0, 20, 20], [30, 30, 60, 60]], dtype=np.float64)
    boxes = np.array([[100, 100, 120, 120], [0, 0, 20, 20], [30, 30, 60, 62], [30, 30, 60, 60],
                      [0, 0, 20, 21], [200, 0, 220, 20]], dtype=np.float64)
    scores = np.array([0.8, 0.8, 0.6, 0.6, 0.9, 0.6])
    return boxes, scores, np.array([1, 2, 3, 3, 1, 2]), gt, np.array([1, 2, 3]), np.zeros(3, dtype=bool)


def _crowded_image(rng):
    """Image 1: 30 objects, 100 high-scoring false positives, 30 hits of which only the 20 best rank <= 100."""
    gt = np.concatenate([np.stack(np.meshgrid(np.arange(6) * 50.0, np.arange(5) * 50.0), -1).reshape(-1, 2)] * 2,
                        axis=1) + [0, 0, 40, 40]  # (30, 4) a grid
    hits = gt + rng.uniform(-2, 2, gt.shape)
    clutter = _boxes(rng, 100, 400, 800)
    scores = np.concatenate([rng.uniform(0.5, 0.9, 20), rng.uniform(0.01, 0.05, 10), rng.uniform(0.06, 0.95, 100)])
    other = np.array([[0, 0, 30, 30]], dtype=np.float64)  # image 2: one object, found
    boxes = np.concatenate([hits, clutter, other])  # (131, 4)
    images = np.concatenate([np.ones(130, dtype=int), [2]])
    return (boxes, np.append(scores, 0.5), images, np.concatenate([gt, other]), np.append(np.ones(30, dtype=int), 2),
            np.zeros(31, dtype=bool))


def _xywh(boxes):
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)  # (n, 4) x, y, width, height


def _coco_ground_truth(gt_boxes, gt_image_ids, gt_iscrowd, image_ids):
    """A pycocotools COCO object of one category (id 1) holding the case's objects and crowd regions."""
    from pycocotools.coco import COCO

    images = [{"id": int(i), "height": 1000, "width": 1000} for i in np.unique(np.concatenate([image_ids,
                                                                                             gt_image_ids]))]
    annotations = [{"id": k + 1, "image_id": int(i), "category_id": 1, "bbox": box.tolist(),
                    "area": float(box[2] * box[3]), "iscrowd": int(c)}
                   for k, (box, i, c) in enumerate(zip(_xywh(gt_boxes), gt_image_ids, gt_iscrowd, strict=True))]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints "creating index..."
        coco.createIndex()
    return coco


def _pycocotools_ap(boxes, scores, image_ids, gt_boxes, gt_image_ids, gt_iscrowd, iou_threshold, evaluator=None):
    """pycocotools' COCOeval (bbox) at the one IoU threshold: the mean of its 101 interpolated precisions."""
    from pycocotools.cocoeval import COCOeval

    coco = _coco_ground_truth(gt_boxes, gt_image_ids, gt_iscrowd, image_ids)
    results = [{"image_id": int(i), "category_id": 1, "bbox": box.tolist(), "score": float(s)}
               for box, s, i in zip(_xywh(boxes), scores, image_ids, strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = (evaluator or COCOeval)(coco, coco.loadRes(results), iouType="bbox")
        coco_eval.params.iouThrs = np.array([iou_threshold])
        coco_eval.evaluate()
        coco_eval.accumulate()
    precision = coco_eval.eval["precision"][0, :, 0, 0, -1]  # (101,): IoU t, all recalls, the class, all areas, 100
    return float(np.mean(precision))


def _library_ap(boxes, scores, image_ids, gt_boxes, gt_image_ids, gt_iscrowd, iou_threshold):
    """AP50 or AP75 of mrcnn_np.evaluate.coco_evaluate, the detections given per image as the model returns them."""
    from mrcnn_np.evaluate import coco_evaluate, to_coco_results

    coco = _coco_ground_truth(gt_boxes, gt_image_ids, gt_iscrowd, image_ids)
    ids = coco.getImgIds()
    outputs = [{"boxes": boxes[image_ids == i], "scores": scores[image_ids == i],
                "labels": np.ones(int(np.sum(image_ids == i)), dtype=np.int64)} for i in ids]
    metrics = coco_evaluate(coco, to_coco_results(outputs, ids), iou_types=("bbox",), verbose=False)
    return metrics["bbox"][{0.5: "AP50", 0.75: "AP75"}[iou_threshold]]


def _torchvision_iou_evaluator(torch, ops):
    """COCOeval whose overlaps come from torchvision.ops.box_iou (for a crowd region: intersection / detection
    area, the intersection recovered from the IoU and the two areas)."""
    from pycocotools.cocoeval import COCOeval

    class TorchvisionIoU(COCOeval):
        def computeIoU(self, imgId, catId):  # noqa: N802, N803  (pycocotools' names)
            gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
            if not gt or not dt:
                return []
            order = np.argsort([-d["score"] for d in dt], kind="mergesort")[:self.params.maxDets[-1]]
            d = torch.tensor([dt[i]["bbox"] for i in order], dtype=torch.float64)  # (D, 4) xywh
            g = torch.tensor([o["bbox"] for o in gt], dtype=torch.float64)  # (G, 4) xywh
            d[:, 2:] += d[:, :2]  # -> xyxy
            g[:, 2:] += g[:, :2]
            iou = ops.box_iou(d, g)  # (D, G)
            area_d, area_g = ops.box_area(d)[:, None], ops.box_area(g)[None, :]
            inter = iou * (area_d + area_g) / (1 + iou)  # iou = inter / (area_d + area_g - inter)
            crowd = torch.tensor([bool(o["iscrowd"]) for o in gt])[None, :]
            return torch.where(crowd, inter / area_d, iou).numpy()

    return TorchvisionIoU


def check_average_precision(ex, label, boxes, scores, image_ids, gt_boxes, gt_image_ids, gt_iscrowd, iou_threshold):
    args = (boxes, scores, image_ids, gt_boxes, gt_image_ids, gt_iscrowd, iou_threshold)
    what = (f"average_precision(boxes {shape_str(boxes.shape)}, scores, image_ids, "
            f"gt_boxes {shape_str(gt_boxes.shape)}, gt_image_ids, gt_iscrowd ({int(gt_iscrowd.sum())} crowd), "
            f"iou_threshold={iou_threshold}) [{label}]")
    got = _call(ex, function(ex, "average_precision"), copies(args), what)
    refs = [("pycocotools' COCOeval (bbox)", _pycocotools_ap(*args)),
            ("mrcnn_np.evaluate.coco_evaluate", _library_ap(*args))]
    modules, note = torch_modules("torch", "torchvision.ops")
    if modules:
        refs.append(("COCOeval with torchvision.ops.box_iou's IoUs",
                     _pycocotools_ap(*args, evaluator=_torchvision_iou_evaluator(*modules))))
    compare(got, refs, lambda got, expected, name: assert_close_scalar(got, expected, f"{what} vs {name}", RTOL),
            lambda expected: MISTAKES.hint("average_precision", got, expected, lambda f: f(*copies(args))))
    return note


TASKS = [
    Task("sgd_momentum_step", "(a) one step of torch.optim.SGD", for_each_case(_sgd_cases, check_sgd_momentum_step)),
    Task("warmup_lr", "(b) linear warm-up, then steps down", for_each_case(_schedule_cases, check_warmup_lr)),
    Task("average_precision", "(c) COCO's AP of one class", for_each_case(_ap_cases, check_average_precision)),
]
