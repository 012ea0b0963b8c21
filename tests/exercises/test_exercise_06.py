"""Chapter 06 (the whole Mask R-CNN): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here each mistake of the chapter's table (mistakes.py) proves that the grader
fails its task with its hint and names the case that caught it; other broken copies of the
solution show what the messages say; and the grader's constructed cases for
``first_disagreement`` are checked to be what their labels say.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mrcnn_np import exercises
from mrcnn_np.exercises import FAIL, PASS
from tests.exercises import support

CHAPTER = "06_mask_rcnn"
TASK_NAMES = ["transform", "boxes_to_original", "predict_from_stages", "first_disagreement"]
GRADER = support.grader(CHAPTER)
MISTAKES = {m.name: m for m in GRADER.MISTAKES}

# texts the message of a tabled mistake holds besides its hint (the case that catches it, ...)
SHOWS = {
    "max_size ignored": ["one (3, 60, 90) image, min_size 96, max_size 128", "image_sizes differ"],
    "sizes rounded": ["two images (3, 50, 40) and (3, 37, 71)", "expected [(80, 64), (64, 122)]"],
    "padding normalised": ["the padded batch vs mrcnn_np: values differ"],
    "padding not rounded up": ["the padded batch vs mrcnn_np:\nexpected shape (1, 3, 96, 128), got (1, 3, 85, 128)"],
    "ratios in float64": ["boxes_to_original on 20 boxes, resized (96, 137) -> original (70, 100) vs mrcnn_np: "
                          "values differ"],
    "ratios upside down": ["vs mrcnn_np: values differ"],
    "height and width swapped": ["vs mrcnn_np: values differ"],
    "boxes not mapped back": ["image 0: boxes vs mrcnn_np's MaskRCNN.predict: values differ"],
    "clipped to the padded batch": ["vs mrcnn_np's MaskRCNN.predict"],
    ">= atol": ["atol exactly the largest error", "expected the stage None, got 'scores'"],
    "NaN ignored": ["NaN in 'features' of stages_b only", "expected the stage 'features', got 'proposals'"],
    "NaN in both counted": ["NaN at the same place in both", "expected the stage 'proposals', got 'transform'"],
}


def test_the_tasks_and_the_table():
    assert [t.name for t in GRADER.TASKS] == TASK_NAMES
    assert set(SHOWS) == set(MISTAKES)
    assert {m.task for m in MISTAKES.values()} == set(TASK_NAMES)  # every task has tabled mistakes


@pytest.mark.parametrize("mistake", list(GRADER.MISTAKES), ids=lambda m: m.name)
def test_a_tabled_mistake_fails_its_task_with_its_hint(mistake, tmp_path):
    support.assert_recognised(CHAPTER, mistake, SHOWS[mistake.name], tmp_path)


def test_a_mistake_only_fails_its_own_task(tmp_path):
    results = support.grade(CHAPTER, support.broken(CHAPTER, MISTAKES["ratios in float64"].changes), tmp_path)
    assert [r.status for r in results.values()] == [PASS, FAIL, PASS, PASS]


# --- task (c): the wiring, not model.predict --------------------------------------------------------
def test_predict_from_stages_cannot_call_predict(tmp_path):
    changes = [("    batch, _ = model.transform(images, dtype=model.dtype)\n",
                "    return model.predict(images)\n    batch, _ = model.transform(images, dtype=model.dtype)\n")]
    support.assert_fails(CHAPTER, changes, "predict_from_stages", ["raised AttributeError", "'predict'"], tmp_path)


def test_a_float32_batch_is_reported(tmp_path):
    changes = [("model.transform(images, dtype=model.dtype)", "model.transform(images)")]
    support.assert_fails(CHAPTER, changes, "predict_from_stages", ["dtypes must match"], tmp_path)


def test_a_result_that_is_not_a_list_of_dicts_is_reported(tmp_path):
    changes = [("    return model.transform.postprocess(", "    return tuple(model.transform.postprocess(")]
    changes += [("original_sizes, to_host=True)\n", "original_sizes, to_host=True))[0]\n")]
    support.assert_fails(CHAPTER, changes, "predict_from_stages", ["expected a list of 2 dict(s) (one per image)"],
                         tmp_path)


# --- task (d): the constructed cases are what they say ------------------------------------------------
def test_a_perturbed_weight_first_changes_its_own_stage():
    tv, model = GRADER.twin_models()
    images = GRADER._images()[:1]
    ours = GRADER.model_stages(model, images)
    names = list(ours)
    assert names[:7] == ["transform: batch", "backbone: P2", "backbone: P3", "backbone: P4", "backbone: P5",
                         "backbone: P6", "rpn: proposals"]
    for parameter, stage in GRADER.PERTURBED:
        theirs = GRADER.model_stages(GRADER.perturbed(model, parameter), images)
        first = next(k for k in names if ours[k].shape != theirs[k].shape or not np.array_equal(ours[k], theirs[k]))
        assert first == stage, parameter
    name = GRADER.PERTURBED[0][0]
    original, changed = model.state_dict(), GRADER.perturbed(model, name).state_dict()
    assert all(np.array_equal(original[k], changed[k]) for k in original if k != name)
    np.testing.assert_allclose(changed[name] - original[name], 1e-3, rtol=1e-9)


def test_torchvision_and_mrcnn_np_agree_on_every_stage():
    tv, model = GRADER.twin_models()
    assert tv is not None  # torch is installed here: the comparison must run
    images = GRADER._images()[:1]
    ours, theirs = GRADER.model_stages(model, images), GRADER.torchvision_stages(tv, images)
    assert list(ours) == list(theirs)
    assert len(ours["detections: boxes"]) > 0 and len(ours["rpn: proposals"]) > 0
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-9, err_msg=name)


def test_the_made_up_cases_have_the_answers_they_claim():
    def error_of(a, b):  # NaN in both agrees; NaN in one only is not a case here
        assert np.array_equal(np.isnan(a), np.isnan(b))
        return float(np.nanmax(np.abs(a - b))) if np.size(a) else 0.0

    for label, a, b, atol, (name, error) in GRADER._made_up_cases():
        earlier = list(a) if name is None else list(a)[: list(a).index(name)]
        errors = [error_of(a[k], b[k]) for k in earlier]
        assert all(e <= atol for e in errors), label
        if name is None:
            assert error == max(errors), label
        elif name not in b or np.shape(a[name]) != np.shape(b[name]) or np.isnan(b[name]).sum() > np.isnan(
                a[name]).sum():
            assert error == math.inf, label
        else:
            assert error == error_of(a[name], b[name]) and error > atol, label


def test_a_first_disagreement_returning_the_worst_stage_fails(tmp_path):
    changes = [("        if error > atol:\n            return name, error\n", "")]
    support.assert_fails(CHAPTER, changes, "first_disagreement", ["expected the stage 'features', got None"],
                         tmp_path)


def test_the_chapter_grades_in_seconds():
    results = exercises.grade("06", support.solution(CHAPTER), exercises_dir=support.EXERCISES)
    assert all(r.status == PASS for r in results), exercises.format_report(results)
    assert sum(r.seconds for r in results) < 60, exercises.format_report(results)
