"""What the chapter tests share: grading broken copies of a chapter's reference solution."""

from __future__ import annotations

import functools
from pathlib import Path

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
