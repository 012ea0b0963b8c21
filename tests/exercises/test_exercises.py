"""The exercise graders are sound both ways, and ``mrcnn-np check`` reports them.

For every chapter under exercises/: the reference solution passes every task and the
untouched stub passes none (the chapters of CUDA_CHAPTERS are graded so by their own test
file, in the simulator's process). Each mistake of chapter 01's table (mistakes.py) proves
that its grader fails the task the mistake belongs to, with its hint; the machinery that
recognises mistakes is tested on its own.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from mrcnn_np import cli, exercises
from mrcnn_np.exercises import FAIL, PASS, TODO, ExerciseError, Task, TaskResult
from tests.exercises import support

EXERCISES = Path(__file__).resolve().parents[2] / "exercises"
CHAPTERS = sorted(p.parent.name for p in EXERCISES.glob("[0-9][0-9]_*/grader.py"))
SOLUTION_01 = EXERCISES / "solutions" / "01_backbone.py"
# numba.cuda kernels, graded in numba's simulator, which must be switched on before numba is imported;
# this process has imported numba without it: test_exercise_08.py grades them in the cudasim process
CUDA_CHAPTERS = {"08_gpu"}
GRADED_HERE = [c for c in CHAPTERS if c not in CUDA_CHAPTERS]


def solution(chapter: str) -> Path:
    return EXERCISES / "solutions" / f"{chapter}.py"


@pytest.fixture(scope="module")
def solution_01_results():
    return exercises.grade("01", SOLUTION_01, exercises_dir=EXERCISES)


def by_name(results: list[TaskResult]) -> dict[str, TaskResult]:
    return {r.name: r for r in results}


# --- every chapter: sound both ways ----------------------------------------------------------------
def test_there_are_chapters():
    assert "01_backbone" in CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_has_readme_stub_and_solution(chapter):
    grader = exercises.load_grader(EXERCISES / chapter)
    assert (EXERCISES / chapter / "README.md").is_file()
    assert (EXERCISES / chapter / grader.STUB).is_file()
    assert solution(chapter).is_file()
    assert all(isinstance(t, Task) for t in grader.TASKS)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stub_and_solution_use_numpy_only(chapter):
    grader = exercises.load_grader(EXERCISES / chapter)
    for path in (EXERCISES / chapter / grader.STUB, solution(chapter)):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
        allowed = {"numpy", "math", "__future__"} | ({"numba"} if chapter in CUDA_CHAPTERS else set())
        assert imported <= allowed, f"{path.name} imports {imported}"


@pytest.mark.parametrize("chapter", sorted(CUDA_CHAPTERS))
def test_a_cuda_chapter_is_graded_in_the_simulators_process(chapter):
    own = Path(__file__).with_name(f"test_exercise_{chapter[:2]}.py")
    assert chapter in CHAPTERS and own.is_file() and "pytestmark = pytest.mark.cudasim" in own.read_text()


@pytest.mark.parametrize("chapter", GRADED_HERE)
def test_reference_solution_passes_every_task(chapter, solution_01_results):
    results = solution_01_results if chapter == "01_backbone" else exercises.grade(chapter, solution(chapter))
    failed = [r for r in results if not r.passed]
    assert not failed, exercises.format_report(failed)
    assert all(r.note is None for r in results), "torch is installed here: every torch comparison must run"


@pytest.mark.parametrize("chapter", GRADED_HERE)
def test_untouched_stub_fails_every_task(chapter):
    results = exercises.grade(chapter, exercises_dir=EXERCISES)
    assert results and all(r.status != PASS for r in results), exercises.format_report(results)
    assert all(r.status == TODO and "not implemented yet" in r.message for r in results)


# --- chapter 01: each tabled mistake fails its task, with its hint ----------------------------------
GRADER_01 = support.grader("01_backbone")
SHOWS_01 = {  # texts the message holds besides the hint
    "taps transposed in im2col": ["vs mrcnn_np.nn.conv.im2col"],
    "output size off by one": ["expected shape (2, 27, 35), got (2, 27, 24)"],
    "kernel transposed in conv2d_forward": ["values differ"],
    "col2im overwrites overlaps instead of adding": ["d_x of conv2d_backward"],
    "no ReLU after the residual sum": ["values differ"],
    "batch norm without eps": ["allowed"],
}


@pytest.mark.parametrize("mistake", list(GRADER_01.MISTAKES), ids=lambda m: m.name)
def test_a_chapter_01_mistake_is_recognised_with_its_hint(mistake, tmp_path):
    support.assert_recognised("01_backbone", mistake, SHOWS_01[mistake.name], tmp_path)


def test_a_solution_importing_the_library_fails(tmp_path):
    support.assert_fails("01_backbone", [("# --- task (b)", "from mrcnn_np.nn.conv import im2col  # noqa: E402\n\n\n"
                                                            "# --- task (b)")], "im2col", ["imported from elsewhere"],
                         tmp_path)


def test_a_crash_in_the_learners_code_names_the_line(tmp_path):
    path = tmp_path / "crash.py"
    path.write_text(SOLUTION_01.read_text().replace(
        "    cols = im2col(x, (kh, kw), stride, padding)  # (N, C_in*kh*kw, Ho*Wo)\n",
        "    cols = im2col(x, (kh, kw), stride, padding)[:, :, :, None]  # (N, C_in*kh*kw, Ho*Wo)\n", 1))
    result = by_name(exercises.grade("01", path, exercises_dir=EXERCISES))["conv2d_forward"]
    assert result.status == FAIL
    assert result.message.startswith("raised ValueError")
    assert "at crash.py, line" in result.message and "in conv2d_forward" in result.message


def task_names(chapter: str) -> list[str]:
    return [t.name for t in exercises.load_grader(EXERCISES / chapter).TASKS]


LATER_CHAPTERS = [c for c in CHAPTERS if not c.startswith("01")]  # 01 has its own, richer tests below


@pytest.mark.parametrize("chapter", [c for c in LATER_CHAPTERS if c in GRADED_HERE])
def test_without_torch_every_chapter_still_grades(chapter, monkeypatch):
    for name in [n for n in sys.modules if n.split(".")[0] in ("torch", "torchvision")] + ["torch", "torchvision"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import torch` now raises ImportError
    results = exercises.grade(chapter[:2], solution(chapter), exercises_dir=EXERCISES)
    assert [r.name for r in results] == task_names(chapter)
    assert all(r.passed for r in results), exercises.format_report(results)
    assert all(r.note == "torch and torchvision not installed: compared with mrcnn_np only" for r in results)


@pytest.mark.parametrize("chapter", LATER_CHAPTERS)
def test_every_chapter_is_found_by_number_and_name(chapter):
    number, name = chapter[:2], chapter[3:]
    for spelling in (number, str(int(number)), chapter, name):
        assert exercises.find_chapter(spelling, EXERCISES) == EXERCISES / chapter


@pytest.mark.parametrize("chapter", [c for c in LATER_CHAPTERS if c in GRADED_HERE])
def test_cli_check_every_chapter(chapter, capsys, monkeypatch):
    names, number = task_names(chapter), chapter[:2]
    monkeypatch.chdir(EXERCISES.parent)
    assert cli.main(["check", number]) == 1
    out = capsys.readouterr().out
    assert sum(line.startswith("TODO  ") for line in out.splitlines()) == len(names)
    assert f"0/{len(names)} tasks passed" in out.splitlines()  # the hint line follows it
    assert cli.main(["check", number, "--path", str(solution(chapter))]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("PASS  ")] == names
    assert out.rstrip().endswith(f"{len(names)}/{len(names)} tasks passed")  # no hint line: nothing to do


def test_without_torch_the_library_comparison_still_grades(monkeypatch):
    for name in [n for n in sys.modules if n.split(".")[0] in ("torch", "torchvision")] + ["torch", "torchvision"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import torch` now raises ImportError
    results = exercises.grade("01", SOLUTION_01, exercises_dir=EXERCISES)
    assert all(r.passed for r in results)
    assert all(r.note and "not installed" in r.note for r in results)
    report = exercises.format_report(results)
    assert "(torch not installed: compared with mrcnn_np only)" in report
    assert "(torch and torchvision not installed: compared with mrcnn_np only)" in report


# --- the framework -----------------------------------------------------------------------------------
def test_a_learner_file_that_does_not_import_is_reported(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("def im2col(x:\n")
    with pytest.raises(ExerciseError, match="could not import .*typo.py"):
        exercises.grade("01", path, exercises_dir=EXERCISES)


@pytest.mark.parametrize("chapter", ["01", "1", 1, "01_backbone", "backbone"])
def test_chapter_names(chapter):
    assert exercises.find_chapter(chapter, EXERCISES) == EXERCISES / "01_backbone"


def test_unknown_chapter_lists_the_available_ones():
    with pytest.raises(ExerciseError, match=r"unknown chapter '99'.*available: 01_backbone"):
        exercises.find_chapter("99", EXERCISES)


def test_exercises_folder_is_found_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./exercises here: the folder next to the package
    assert exercises.find_exercises_dir() == EXERCISES
    monkeypatch.setattr(exercises, "_package_exercises_dir", lambda: tmp_path / "gone")
    with pytest.raises(ExerciseError) as error:
        exercises.find_exercises_dir()
    assert str(tmp_path / "exercises") in str(error.value) and str(tmp_path / "gone") in str(error.value)
    assert "--exercises-dir" in str(error.value)
    monkeypatch.chdir(EXERCISES.parent)  # ./exercises
    assert exercises.find_exercises_dir() == EXERCISES
    with pytest.raises(ExerciseError, match="exercises/ folder"):
        exercises.find_exercises_dir(tmp_path)


def test_tasks_are_independent_and_the_report_reads_well(tmp_path):
    module = exercises.load_module(SOLUTION_01)

    def broken(_):
        raise KeyError("boom")

    def unfinished(_):
        raise NotImplementedError

    tasks = [Task("a", "first", lambda m: None), Task("b", "second", broken),
             Task("c", "third", lambda m: "a note"), Task("d", "fourth", lambda m: exercises.assert_close(
                 [[1.0, 2.0]], [[1.0], [2.0]], "d(x)")), Task("e", "fifth", unfinished)]
    results = [exercises.run_task(t, module) for t in tasks]
    assert [r.status for r in results] == [PASS, FAIL, PASS, FAIL, TODO]
    report = exercises.format_report(results, title="Title")
    lines = report.splitlines()
    assert lines[0] == "Title" and lines[-1] == "2/5 tasks passed"
    assert lines[-3].startswith("      not implemented yet: NotImplementedError  (test_exercises.py, line")
    assert any(line.startswith("PASS  c") and line.endswith("(a note)") for line in lines)
    assert "      raised KeyError: 'boom'" in lines
    assert lines[lines.index("      d(x):") + 1] == "      expected shape (2, 1), got (1, 2)"


def test_assert_close_messages():
    exercises.assert_close([1.0, 2.0 + 1e-12], [1.0, 2.0], "ok")
    with pytest.raises(AssertionError, match=r"max abs error 0.5 at index \(1,\): expected 2, got 2.5"):
        exercises.assert_close([1.0, 2.5], [1.0, 2.0], "x")
    with pytest.raises(AssertionError, match="got None"):
        exercises.assert_close(None, [1.0], "x")
    with pytest.raises(AssertionError, match="values differ"):
        exercises.assert_close([float("nan")], [1.0], "x")


def test_apply_changes_needs_each_old_text_once():
    assert exercises.apply_changes("a = 1\nb = 2\n", [("1", "3"), ("b", "c")]) == "a = 3\nc = 2\n"
    for source in ("a = 1\n", "a = 2 + 2\n"):
        with pytest.raises(ValueError, match="not once"):
            exercises.apply_changes(source, [("2", "3")])


def test_matches_compares_results_as_a_learner_returns_them():
    assert exercises.matches((np.ones(2), 1.0), [np.ones(2) + 1e-12, np.float64(1.0)])
    assert exercises.matches(np.array([np.nan, 1.0]), [np.nan, 1.0])
    assert not exercises.matches(np.ones((2, 1)), np.ones(2)) and not exercises.matches((1.0,), 1.0)
    assert not exercises.matches(np.ones(2), np.ones(2) * (1 + 1e-6)) and not exercises.matches("a", 1.0)


def test_a_mistake_is_recognised_by_its_result_and_skipped_where_it_crashes():
    mistakes = support.grader("01_backbone").MISTAKES
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 4))
    right = exercises.load_module(solution("01_backbone")).im2col(x, (3, 3), 1, 1)
    (off_by_one,) = [m for m in mistakes if m.name == "output size off by one"]
    wrong = exercises.broken_solution(solution("01_backbone"), off_by_one.changes).im2col(x, (3, 3), 1, 1)
    call = exercises.caller(x, (3, 3), 1, 1)
    assert mistakes.hint("im2col", wrong, right, call) == off_by_one.hint
    assert mistakes.hint("im2col", 2 * right, right, call) is None

    def crashing(im2col):
        raise IndexError("a case the mistakes cannot run")

    assert mistakes.hint("im2col", wrong, right, crashing) is None


# --- the command line -----------------------------------------------------------------------------------
def test_cli_check_on_the_stub_fails_with_todo_lines(capsys, monkeypatch):
    monkeypatch.chdir(EXERCISES.parent)
    assert cli.main(["check", "01"]) == 1
    out = capsys.readouterr().out
    assert "01_backbone" in out and "exercise.py" in out
    assert sum(line.startswith("TODO  ") for line in out.splitlines()) == 4
    assert "0/4 tasks passed" in out.splitlines()


def test_cli_check_on_the_solution_passes_from_another_directory(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "01", "--path", str(SOLUTION_01), "--exercises-dir", str(EXERCISES)]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("PASS  ") for line in out.splitlines()) == 4
    assert out.rstrip().endswith("4/4 tasks passed")


@pytest.mark.parametrize(("argv", "status", "message"), [
    (["check", "99"], 2, "unknown chapter '99'"),
    (["check", "01", "--path", "no_such_file.py"], 2, "no such file"),
    (["check", "01", "--exercises-dir", "/nonexistent"], 2, "/nonexistent"),
])
def test_cli_check_errors_are_clear(argv, status, message, capsys):
    assert cli.main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_cli_check_reports_a_file_that_does_not_import(tmp_path, capsys):
    path = tmp_path / "typo.py"
    path.write_text("def im2col(x:\n")
    assert cli.main(["check", "01", "--path", str(path), "--exercises-dir", str(EXERCISES)]) == 1
    assert "could not import" in capsys.readouterr().err


@pytest.mark.parametrize("which", [0, 1, 2], ids=["d_x", "d_weight", "d_bias"])
def test_conv2d_backward_is_judged_by_central_differences_alone(which):
    """The finite-difference judge of chapter 01's backward task is not vacuous: the solution's
    gradients pass it, and each of them off by one part in 10^4 fails it, with no reference involved."""
    backward = exercises.load_module(SOLUTION_01).conv2d_backward
    cases = [c for c in GRADER_01._backward_cases() if c[-1]]
    assert cases
    name = ("d_x", "d_weight", "d_bias")[which]
    for g, x, w, b, stride, padding, _ in cases:
        got = backward(g, x, w, stride, padding)
        GRADER_01._by_differences(got, g, x, w, b, stride, padding, "case")
        wrong = list(got)
        wrong[which] = wrong[which] * (1 + 1e-4)
        with pytest.raises(AssertionError, match=rf"{name} of case.*vs central differences"):
            GRADER_01._by_differences(wrong, g, x, w, b, stride, padding, "case")
