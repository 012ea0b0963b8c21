"""What the chapter tests share: grading broken copies of a chapter's reference solution."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from mrcnn_np import exercises
from mrcnn_np.exercises import FAIL, Mistake, TaskResult

EXERCISES = Path(__file__).resolve().parents[2] / "exercises"


def solution(chapter: str) -> Path:
    return EXERCISES / "solutions" / f"{chapter}.py"


@functools.cache
def grader(chapter: str):
    return exercises.load_grader(EXERCISES / chapter)


def broken(chapter: str, changes) -> str:
    """The chapter's solution with ``changes`` ((old, new) pairs, each ``old`` found once) made."""
    return exercises.apply_changes(solution(chapter).read_text(), changes)


def grade(chapter: str, text: str, tmp_path: Path, task: str | None = None) -> dict[str, TaskResult]:
    """The results, by task name, of grading the file holding ``text`` (only ``task``, when given)."""
    path = tmp_path / "broken.py"
    path.write_text(text)
    module = exercises.load_module(path)
    return {t.name: exercises.run_task(t, module) for t in grader(chapter).TASKS if task in (None, t.name)}


def assert_fails(chapter: str, changes, task: str, texts, tmp_path: Path) -> None:
    """The solution with ``changes`` made fails ``task``, and the message holds every one of ``texts``."""
    result = grade(chapter, broken(chapter, changes), tmp_path, task)[task]
    assert result.status == FAIL, exercises.format_report([result])
    for text in texts:
        assert text in result.message, result.message


def assert_recognised(chapter: str, mistake: Mistake, texts, tmp_path: Path) -> None:
    """A tabled mistake fails its task with its hint, and ``texts`` (e.g. the case) in the message."""
    assert_fails(chapter, mistake.changes, mistake.task, [f"hint: {mistake.hint}", *texts], tmp_path)


def chapter_tests(chapter: str, task_names, shows: dict, bugs: dict, *, every_mistake_shown: bool = False,
                  every_task_has_a_mistake: bool = True, task_names_are_graded: bool = False,
                  mistake_warnings: str | None = None, bug_warnings: str | None = None):
    """The three tests every chapter file runs on its tables, to assign in the chapter's test file::

        test_each_mistake_is_recognised_with_its_hint, test_a_broken_solution_fails_its_task, \\
            test_the_tables_agree = support.chapter_tests(CHAPTER, TASK_NAMES, SHOWS, BUGS)

    In: ``chapter``, the folder name (``"02_anchors_and_matching"``); ``task_names``, its tasks;
    ``shows``, mistake name -> texts its failure message must hold besides the hint; ``bugs``,
    name -> (changes, task, texts) of broken copies that are not in the mistakes table. Options:
    ``every_mistake_shown``, ``shows`` has an entry for every mistake (else a subset);
    ``every_task_has_a_mistake``, the tabled mistakes' tasks are exactly ``task_names`` (else a
    subset); ``task_names_are_graded``, ``task_names`` are also exactly the grader's TASKS;
    ``mistake_warnings``, ``bug_warnings``, a ``filterwarnings`` filter for the first or second test.

    Out: the three tests, in that order, the first two parametrised over the mistakes and ``bugs``
    (ids: their names); pytest collects them under the names they are assigned to.
    """
    mistakes = list(grader(chapter).MISTAKES)

    @pytest.mark.parametrize("mistake", mistakes, ids=lambda m: m.name)
    def test_each_mistake_is_recognised_with_its_hint(mistake, tmp_path):
        assert_recognised(chapter, mistake, shows.get(mistake.name, []), tmp_path)

    @pytest.mark.parametrize("bug", bugs)
    def test_a_broken_solution_fails_its_task(bug, tmp_path):
        assert_fails(chapter, *bugs[bug], tmp_path)

    def test_the_tables_agree():
        names = [m.name for m in grader(chapter).MISTAKES]
        assert len(set(names)) == len(names), f"mistake names repeated: {names}"
        assert (set(shows) == set(names)) if every_mistake_shown else (set(shows) <= set(names)), \
            f"in SHOWS, not tabled: {sorted(set(shows) - set(names))}; tabled, not in SHOWS: {sorted(set(names) - set(shows))}"
        assert not set(bugs) & set(names), f"BUGS also tabled as mistakes: {sorted(set(bugs) & set(names))}"
        tasks = {m.task for m in grader(chapter).MISTAKES}
        assert (tasks == set(task_names)) if every_task_has_a_mistake else (tasks <= set(task_names)), \
            f"the mistakes' tasks {sorted(tasks)} vs TASK_NAMES {sorted(task_names)}"
        if task_names_are_graded:
            graded = [t.name for t in grader(chapter).TASKS]
            assert set(task_names) == set(graded), f"TASK_NAMES {sorted(task_names)} vs the grader's tasks {graded}"

    if mistake_warnings:
        test_each_mistake_is_recognised_with_its_hint = pytest.mark.filterwarnings(mistake_warnings)(
            test_each_mistake_is_recognised_with_its_hint)
    if bug_warnings:
        test_a_broken_solution_fails_its_task = pytest.mark.filterwarnings(bug_warnings)(
            test_a_broken_solution_fails_its_task)
    return test_each_mistake_is_recognised_with_its_hint, test_a_broken_solution_fails_its_task, test_the_tables_agree
