"""COCO evaluation with pycocotools: detections and masks scored the way the field scores them.

In:  ground truth as a pycocotools ``COCO`` object (from a COCO-format JSON file, or built in
     memory from targets with :func:`coco_from_targets`), and the model's outputs per image
     (``boxes (D, 4)`` xyxy, ``labels (D,)``, ``scores (D,)``, and from Mask R-CNN ``masks (D, 1,
     H, W)`` probabilities; Faster R-CNN's outputs have none and are scored on boxes only).
Out: the standard AP table printed by ``COCOeval.summarize()``, and the numbers as a dict per
     IoU type (``"bbox"``, ``"segm"``): AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs,
     ARm, ARl.

Masks are thresholded at 0.5 and run-length encoded (RLE) with pycocotools; boxes are given
to COCO as ``x, y, width, height``. AP is averaged over IoU thresholds 0.50:0.05:0.95; AP50
is the PASCAL-style AP at IoU 0.5. Lin et al., "Microsoft COCO" (2014); the metric code is
pycocotools' ``COCOeval``, used as it is.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .backend import to_numpy

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def encode_mask(mask) -> dict:
    """A binary (H, W) mask -> COCO RLE ``{"size": [H, W], "counts": str}``."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # JSON-serialisable
    return rle


def xyxy_to_xywh(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def coco_from_targets(targets: list, image_sizes: list, categories: list[str] | None = None) -> COCO:
    """Ground truth in memory: per image ``{"boxes" (G, 4) xyxy, "labels" (G,), "masks" (G, H, W)}``
    and its (H, W) -> a ``COCO`` object with image ids 1..N and category ids = labels."""
    images, annotations = [], []
    label_ids = sorted({int(label) for t in targets for label in to_numpy(t["labels"]).tolist()})
    names = categories or [f"class {i}" for i in range(max(label_ids, default=0) + 1)]
    for image_id, (t, (h, w)) in enumerate(zip(targets, image_sizes, strict=True), start=1):
        images.append({"id": image_id, "height": int(h), "width": int(w)})
        masks = to_numpy(t["masks"]) if "masks" in t else None
        for g, (box, label) in enumerate(zip(xyxy_to_xywh(to_numpy(t["boxes"])), to_numpy(t["labels"]), strict=True)):
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                   "bbox": box.tolist(), "iscrowd": 0, "area": float(box[2] * box[3])}
            if masks is not None:
                ann["segmentation"] = encode_mask(masks[g])
                ann["area"] = float(masks[g].sum())
            annotations.append(ann)
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": i, "name": names[i]} for i in range(1, len(names))]}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints "creating index..."
        coco.createIndex()
    return coco


def to_coco_results(outputs: list, image_ids: list, mask_threshold: float = 0.5,
                    category_ids=None) -> list[dict]:
    """Model outputs -> COCO result dicts (``image_id``, ``category_id``, ``bbox`` xywh, ``score``,
    and ``segmentation`` RLE when the outputs carry masks). ``category_ids[label]`` is the COCO
    category of a label (default: the label itself)."""
    results = []
    for out, image_id in zip(outputs, image_ids, strict=True):
        boxes, scores, labels = (to_numpy(out[k]) for k in ("boxes", "scores", "labels"))
        masks = to_numpy(out["masks"]) if "masks" in out else None
        for d, (box, score, label) in enumerate(zip(xyxy_to_xywh(boxes), scores, labels, strict=True)):
            category = int(label) if category_ids is None else int(category_ids[int(label)])
            r = {"image_id": int(image_id), "category_id": category, "bbox": box.tolist(), "score": float(score)}
            if masks is not None:
                r["segmentation"] = encode_mask(masks[d, 0] >= mask_threshold)
            results.append(r)
    return results


def coco_evaluate(coco_gt: COCO, results: list[dict], iou_types=("bbox", "segm"), verbose: bool = True) -> dict:
    """Run COCOeval for each IoU type; print the standard table when ``verbose``.

    Returns ``{iou_type: {"AP": ..., "AP50": ..., ...}}``. With no results at all every number is
    0 (pycocotools itself refuses an empty result list)."""
    if "segm" in iou_types and results and "segmentation" not in results[0]:
        raise ValueError("segm evaluation needs masks in the results (outputs with a 'masks' entry)")
    metrics = {}
    for iou_type in iou_types:
        if not results:
            metrics[iou_type] = dict.fromkeys(STAT_NAMES, 0.0)
            if verbose:
                print(f"{iou_type}: no detections, every AP and AR is 0")
            continue
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink):
            coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds keys to the dicts it gets
            evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        if verbose:
            table = [line for line in sink.getvalue().splitlines() if "Average" in line]
            print(f"{iou_type}:\n" + "\n".join(table))
        metrics[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}
    return metrics


def evaluate_model(model, dataset, iou_types=None, batch_size: int = 4, progress: bool = True,
                   verbose: bool = True) -> tuple[dict, list]:
    """Run ``model`` (in eval mode) on every image of ``dataset`` (a
    :class:`~mrcnn_np.data.coco.CocoDataset`) and score it against ``dataset.coco``. ``iou_types``
    None: ``("bbox", "segm")`` for a model with the mask branch, ``("bbox",)`` without (Faster R-CNN).

    Returns ``(metrics, outputs)``: the numbers of :func:`coco_evaluate` and the model's
    outputs per image, in the dataset's order."""
    from .progress import progress_bar

    classes = getattr(getattr(model, "config", None), "num_classes", None)
    if classes is not None and classes != len(dataset.categories):
        raise ValueError(f"evaluate_model: the model has {classes} classes (background included) but the dataset "
                         f"{len(dataset.categories)} ({', '.join(dataset.categories[1:])})")
    if iou_types is None:
        has_mask = getattr(getattr(model, "config", None), "mask_branch", True)
        iou_types = ("bbox", "segm") if has_mask else ("bbox",)
    model.eval()
    outputs = []
    with progress_bar(progress, total=len(dataset), desc="evaluate") as bar:
        for start in range(0, len(dataset), batch_size):
            images = [dataset.image(i) for i in range(start, min(start + batch_size, len(dataset)))]
            outputs += model(images)
            bar.update(len(images))
    results = to_coco_results(outputs, dataset.image_ids, category_ids=dataset.category_ids)
    return coco_evaluate(dataset.coco, results, iou_types, verbose), outputs
