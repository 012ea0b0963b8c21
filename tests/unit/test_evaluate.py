"""COCO evaluation: perfect predictions score 1, degraded ones less, and RLE round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn_np.data.shapes import random_image
from mrcnn_np.evaluate import coco_evaluate, coco_from_targets, encode_mask, to_coco_results


def shapes_ground_truth(n=6, size=(80, 100), seed=0):
    rng = np.random.default_rng(seed)
    targets = []
    for _ in range(n):
        _, masks, labels = random_image(rng, *size, max_instances=3)
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        targets.append({"boxes": np.array(boxes, float), "labels": labels, "masks": masks.astype(np.uint8)})
    return targets, [size] * n


def as_outputs(targets, shift=0.0):
    """Predictions equal to the ground truth (boxes shifted by ``shift`` px), masks as probabilities."""
    outs = []
    for t in targets:
        masks = np.roll(t["masks"], int(shift), axis=2).astype(np.float32)[:, None]
        outs.append({"boxes": t["boxes"] + [shift, 0, shift, 0], "labels": t["labels"],
                     "scores": np.linspace(0.9, 0.5, len(t["labels"])), "masks": masks})
    return outs


def test_rle_round_trip_and_json():
    m = np.zeros((7, 9), np.uint8)
    m[2:5, 1:6] = 1
    rle = encode_mask(m)
    json.dumps(rle)
    back = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    np.testing.assert_array_equal(back, m)


def test_perfect_predictions_score_one(capsys):
    targets, sizes = shapes_ground_truth()
    gt = coco_from_targets(targets, sizes, ["background", "square", "circle", "triangle"])
    metrics = coco_evaluate(gt, to_coco_results(as_outputs(targets), range(1, len(targets) + 1)))
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and metrics["segm"]["AP"] == pytest.approx(1.0)
    assert metrics["bbox"]["AP50"] == pytest.approx(1.0)
    printed = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in printed and "segm:" in printed


def test_shifted_predictions_score_less_and_wrong_labels_score_zero():
    targets, sizes = shapes_ground_truth(seed=1)
    gt = coco_from_targets(targets, sizes)
    ids = range(1, len(targets) + 1)
    shifted = coco_evaluate(gt, to_coco_results(as_outputs(targets, shift=4.0), ids), verbose=False)
    assert 0 < shifted["bbox"]["AP"] < 1 and 0 < shifted["segm"]["AP"] < 1
    wrong = as_outputs(targets)
    for o in wrong:
        o["labels"] = o["labels"] % 3 + 1  # every label changed
    metrics = coco_evaluate(gt, to_coco_results(wrong, ids), verbose=False)
    assert metrics["bbox"]["AP"] == 0 and metrics["segm"]["AP"] == 0


def test_no_detections_is_zero_not_a_crash():
    targets, sizes = shapes_ground_truth(n=2)
    metrics = coco_evaluate(coco_from_targets(targets, sizes), [], verbose=False)
    assert metrics["bbox"]["AP"] == 0 and metrics["segm"]["AR100"] == 0


def test_segm_needs_masks():
    targets, sizes = shapes_ground_truth(n=1)
    outputs = [{k: v for k, v in o.items() if k != "masks"} for o in as_outputs(targets)]
    with pytest.raises(ValueError, match="segm evaluation needs masks"):
        coco_evaluate(coco_from_targets(targets, sizes), to_coco_results(outputs, [1]), verbose=False)


def test_results_are_not_mutated():
    targets, sizes = shapes_ground_truth(n=2)
    results = to_coco_results(as_outputs(targets), [1, 2])
    before = json.dumps(results)
    coco_evaluate(coco_from_targets(targets, sizes), results, verbose=False)
    assert json.dumps(results) == before


def test_evaluate_model_refuses_a_model_of_other_classes():
    from mrcnn_np.config import tiny
    from mrcnn_np.data.shapes import shapes_dataset
    from mrcnn_np.evaluate import evaluate_model
    from mrcnn_np.model.mask_rcnn import MaskRCNN

    dataset = shapes_dataset(1, seed=0, height=64, width=64, max_instances=1)  # 3 shapes + background
    model = MaskRCNN(tiny(num_classes=3, min_size=64, max_size=64), rng=0)
    with pytest.raises(ValueError, match=r"the model has 3 classes .* but the dataset 4 \(square, circle, triangle\)"):
        evaluate_model(model, dataset, progress=False)
