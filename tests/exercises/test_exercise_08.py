"""Chapter 08 (numba.cuda kernels): graded in the simulator, sound both ways, each mistake recognised.

Marked ``cudasim``: scripts/test.sh runs this file in the pytest process that has
NUMBA_ENABLE_CUDASIM=1 (numba reads it once, when it is imported). test_exercises.py grades
the other chapters in the main process, where numba has been imported without the simulator;
chapter 08 is graded here instead: the reference solution passes every task, the untouched
stub fails every task, each mistake of the chapter's table (mistakes.py) fails its task with
its hint, and other broken copies fail with the grader's own words. The last tests run
``mrcnn-np check 08`` in fresh processes without the variable and without a visible GPU: the
grader switches the simulator on by itself, and says so when it is too late to.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from numba import config

from mrcnn_np import exercises
from mrcnn_np.exercises import FAIL, PASS, TODO
from tests.exercises import support

pytestmark = pytest.mark.cudasim

CHAPTER = "08_gpu"
TASK_NAMES = ["box_iou", "element_index", "roi_align"]
GRADER = support.grader(CHAPTER)
TABLE = exercises.load_module(support.EXERCISES / CHAPTER / "mistakes.py")
MISTAKES = {m.name: m for m in GRADER.MISTAKES}
SIMULATED = "in numba.cuda's simulator"
REPO = support.EXERCISES.parent


def test_this_process_runs_the_simulator():
    """Fails (never skips) when the file is run without NUMBA_ENABLE_CUDASIM=1: the tests below pin simulator
    behaviour (a thread out of bounds raises there; on a GPU it reads garbage)."""
    assert config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=1 -m cudasim (scripts/test.sh does)"


def test_the_reference_solution_passes_every_task():
    results = exercises.grade("08", support.solution(CHAPTER), exercises_dir=support.EXERCISES)
    assert [r.name for r in results] == TASK_NAMES
    assert all(r.passed for r in results), exercises.format_report(results)
    assert all(r.note == SIMULATED for r in results)


def test_the_untouched_stub_fails_every_task():
    results = exercises.grade("08", exercises_dir=support.EXERCISES)
    assert results and all(r.status == TODO and "not implemented yet" in r.message for r in results), \
        exercises.format_report(results)


# texts the message of a tabled mistake holds besides its hint (the case that catches it, ...)
SHOWS = {
    "threads mapped i, j = cuda.grid(2): x taken as the row": ["[random boxes, float64]", "exactly: values differ"],
    "2-D grid rounded down: size // threads": ["[random boxes, float64]"],
    "1-D grid rounded down: size // threads": ["aligned=False, float64]"],
    "no guard for a union of 0": ["[identical, nested, touching, apart, of zero area (two points: IoU 0)]"],
    "p fastest instead of q": ["element_index(k=1, C=3, PH=4, PW=5)", "expected (r, c, p, q) = (0, 0, 0, 1), "
                                                                      "got (0, 0, 1, 0)"],
    "c not reduced modulo C": ["element_index(k=60, C=3, PH=4, PW=5)", "got (1, 3, 0, 0)"],
    "the sum of the sample points instead of their mean": ["aligned=False, float64]"],
    "every box read from the first image": ["the largest error is in box r = ", "image 1"],
}


GUARD = "    if i < out.shape[0] and j < out.shape[1]:  # the grid is rounded up to whole blocks\n"
EARLY_IOU = ("    if n == 0 or m == 0:  # a grid of 0 blocks is an error on a GPU: nothing to launch\n"
             "        return np.zeros((n, m), dtype=boxes1.dtype)\n")
EARLY_ROI = ("    if R == 0:  # no box: nothing to launch\n"
             "        return np.zeros((0, C, PH, PW), dtype=features.dtype)\n")
OUT_IOU = "out = cuda.to_device(np.zeros((n, m), dtype=boxes1.dtype))"
LAUNCH_IOU = ("    box_iou_kernel[blocks, THREADS_2D](cuda.to_device(boxes1), cuda.to_device(boxes2), out)\n"
              "    return out.copy_to_host()\n")
UNWRITTEN = "out = cuda.to_device(np.full((n, m), -1.0, dtype=boxes1.dtype))"  # unwritten elements: -1, not 0

# broken copies the message explains in its own words: ([(old, new), ...], the task that fails, texts of its message)
BUGS = {
    "no bounds check in box_iou_kernel": (
        [(GUARD, "    if True:\n")], "box_iou",
        ["[random boxes, float64]:\nraised IndexError", "out of bounds", "at broken.py, line", "in box_iou",
         "hint: a thread past the end of the output read or wrote outside an array"]),
    "grid sizes as floats": (
        [(TABLE.BLOCKS_2D, "(m / THREADS_2D[0], n / THREADS_2D[1])")], "box_iou",
        ["raised TypeError", "griddim", "hint: grid and block sizes are whole numbers"]),
    "the grid rounded down, the output not zeroed": (
        [(TABLE.BLOCKS_2D, "(m // THREADS_2D[0] + 1, n // THREADS_2D[1])"), (OUT_IOU, UNWRITTEN)], "box_iou",
        ["[random boxes, float64]", "hint: no thread computed the rows i >= 16 (your launch, a grid of (1, 1) blocks "
                                    "of (16, 16) threads, spans 16 columns and 16 rows)", "blocks = math.ceil("]),
    "threads swapped, the output not zeroed": (
        [("j, i = cuda.grid(2)", "i, j = cuda.grid(2)"), (OUT_IOU, UNWRITTEN)], "box_iou",
        ["hint: no thread computed the rows i >= 16: your kernel takes the row i from x",
         "make it the column j (j, i = cuda.grid(2))"]),
    "a launch of 0 blocks when there are no boxes": (
        [(EARLY_IOU, "")], "box_iou",
        ["[no boxes in boxes1]:\nyour launcher launched box_iou_kernel with a grid of (1, 0) blocks",
         "hint: when there is nothing to compute (no boxes), return the empty result without launching"]),
    "IoU computed on the host": (
        [(LAUNCH_IOU, "    from mrcnn_np.ops.boxes import box_iou_numpy\n\n"
                      "    return box_iou_numpy(boxes1, boxes2)\n")], "box_iou",
        ["your launcher returned without launching box_iou_kernel"]),
    "a device array returned": (
        [(LAUNCH_IOU, LAUNCH_IOU.replace("out.copy_to_host()", "out"))], "box_iou",
        ["your launcher returned a device array", "out.copy_to_host()"]),
    "a float64 output for float32 boxes": (
        [(OUT_IOU, "out = cuda.to_device(np.zeros((n, m)))")], "box_iou",
        ["[random boxes, float32]:\nexpected float32 (the inputs' dtype), got float64"]),
    "the last bits of a different order": (
        [("union = area_i + area_j - inter", "union = area_i - inter + area_j")], "box_iou",
        ["exactly: values differ", "hint: only the last bits differ"]),
    "element_index a kernel": (
        [("@cuda.jit(device=True)", "@cuda.jit")], "element_index",
        ["element_index in your file is a kernel (@cuda.jit): keep @cuda.jit(device=True) above it"]),
    "element_index a plain function": (
        [("@cuda.jit(device=True)\n", "")], "element_index",
        ["element_index in your file is a plain Python function"]),
    "element_index dividing with /": (
        [("r = k // (PW * PH * C)", "r = k / (PW * PH * C)")], "element_index",
        ["element_index(k=0, C=3, PH=4, PW=5)", "expected a tuple of 4 ints (r, c, p, q), got (0.0, 0, 0, 0)",
         "hint: use // (whole-number division), not /"]),
    "roi_align on a broken element_index": (
        [("p = (k // PW) % PH", "p = (k // PH) % PH")], "roi_align",
        ["hint: your element_index is wrong (task (b)): if roi_align_kernel uses it, fix it first"]),
    "no bounds check in roi_align_kernel": (
        [("    if k < R * C * PH * PW:\n", "    if True:\n")], "roi_align",
        ["raised IndexError", "hint: a thread past the end of the output", "(if k < R * C * PH * PW: ...)"]),
    "a launch of 0 blocks for no rois": (
        [(EARLY_ROI, "")], "roi_align",
        ["[no boxes: rois (0, 5)]:\nyour launcher launched roi_align_kernel with a grid of (0,) blocks"]),
    "the 1-D grid rounded down, the output not zeroed": (
        [(TABLE.BLOCKS_1D, "blocks = R * C * PH * PW // THREADS"),
         ("out = cuda.to_device(np.zeros((R, C, PH, PW), dtype=features.dtype))",
          "out = cuda.to_device(np.full((R, C, PH, PW), 7.0, dtype=features.dtype))")], "roi_align",
        ["hint: only the first 128 of the 180 elements have a thread (your launch, a grid of (1,) blocks of (128,) "
         "threads)"]),
}


test_each_mistake_is_recognised_with_its_hint, test_a_broken_solution_fails_its_task, test_the_tables_agree = \
    support.chapter_tests(CHAPTER, TASK_NAMES, SHOWS, BUGS,  # 0 / 0 of a broken copy:
                          mistake_warnings="ignore:invalid value encountered:RuntimeWarning",
                          bug_warnings="ignore:invalid value encountered:RuntimeWarning")


def test_the_order_of_the_threads_is_element_index_s_alone(tmp_path):
    """p fastest is the wrong convention for element_index, but a bijection: RoIAlign's values stay right."""
    results = support.grade(CHAPTER, support.broken(CHAPTER, MISTAKES["p fastest instead of q"].changes), tmp_path)
    assert {name: r.status for name, r in results.items()} == {"box_iou": PASS, "element_index": FAIL,
                                                               "roi_align": PASS}


# --- `mrcnn-np check 08` in a fresh process -----------------------------------------------------------
def check(*args, env=None, first="") -> subprocess.CompletedProcess:
    """``mrcnn-np check 08 ...`` in a fresh Python that sees no GPU and has no NUMBA_ENABLE_CUDASIM, unless
    ``env`` adds one; ``first`` runs before (e.g. ``import numba``)."""
    environment = {k: v for k, v in os.environ.items() if k != GRADER.SIMULATOR}
    environment.update(CUDA_VISIBLE_DEVICES="", **(env or {}))
    code = f"import sys\n{first}\nfrom mrcnn_np import cli\nsys.exit(cli.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "check", "08", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=300)


def status_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line[:6] in ("PASS  ", "FAIL  ", "TODO  ")]


def test_check_chooses_the_simulator_by_itself():
    done = check("--path", str(support.solution(CHAPTER)))
    lines = status_lines(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[1] for line in lines] == TASK_NAMES and all(line.startswith("PASS  ") for line in lines)
    assert all(line.endswith(f"({SIMULATED})") for line in lines)
    assert done.stdout.rstrip().endswith("3/3 tasks passed")
    done = check()  # the stub
    assert done.returncode == 1 and [line[:4] for line in status_lines(done.stdout)] == [TODO] * 3, done.stdout


def test_check_says_when_numba_was_imported_without_the_simulator():
    done = check("--path", str(support.solution(CHAPTER)), first="import numba")
    lines = status_lines(done.stdout)
    assert done.returncode == 1 and [line[:4] for line in lines] == [FAIL] * 3, done.stdout + done.stderr
    assert done.stdout.count("numba.cuda has no GPU here, and its simulator is off: numba was imported") == 3
    assert "`mrcnn-np check 08` in a terminal switches the simulator on by itself" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_check_leaves_an_explicit_choice_alone():
    done = check("--path", str(support.solution(CHAPTER)), env={GRADER.SIMULATOR: "0"})
    assert done.returncode == 1 and done.stdout.count("NUMBA_ENABLE_CUDASIM=0 asks for a GPU, and numba.cuda finds "
                                                      "none") == 3, done.stdout + done.stderr
