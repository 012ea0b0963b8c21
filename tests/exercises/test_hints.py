"""Exercises state the contract, hints carry the steps.

Every task of every chapter has progressive hints (``hints.py``) that ``mrcnn-np check NN
--hint`` reveals one at a time, remembered between calls; no stub docstring gives the
algorithm step by step: none has a line that reads as a code statement, and none repeats a
line of the reference solution's code, and none is an ordered list of steps (numbered lines,
"step 2", or a run of "first ... then ... next ... finally").
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mrcnn_np import cli, exercises
from mrcnn_np.exercises import FAIL, PASS, ExerciseError, TaskResult

EXERCISES = Path(__file__).resolve().parents[2] / "exercises"
CHAPTERS = sorted(p.parent.name for p in EXERCISES.glob("[0-9][0-9]_*/grader.py"))

# a docstring line that reads as code: a statement keyword, or an assignment at the start of the line
CODE_LINE = re.compile(r"^\s*(for|if|elif|else|while|return|def)\b|^\s*[A-Za-z_][\w\[\], .]*\s*[-+*/]?=[^=]")
SHORTEST_COPIED_LINE = 15  # characters: shorter solution lines ("return out") say nothing
# a docstring line that numbers a step: "1. ", "2) ", "step 3", "Step 4:"
STEP_LINE = re.compile(r"^\s*(\d+[.)](\s|$)|step\s*\d+)", re.IGNORECASE)
SEQUENCE_WORD = re.compile(r"\b(then|next|finally)\b", re.IGNORECASE)
MOST_SEQUENCE_WORDS = 2  # "ordered by level, then location, then anchor" is a contract; a third reads as a recipe


def steps_in(docstring: str) -> list[str]:
    """What makes a docstring read as an ordered list of steps: its numbered lines, and its sequence words
    ("then", "next", "finally") when there are more than MOST_SEQUENCE_WORDS of them. Empty: contract prose."""
    found = [line.strip() for line in docstring.splitlines() if STEP_LINE.match(line)]
    words = SEQUENCE_WORD.findall(docstring)
    if len(words) > MOST_SEQUENCE_WORDS:
        found.append(f"{len(words)} sequence words: {', '.join(w.lower() for w in words)}")
    return found


def task_names(chapter: str) -> list[str]:
    """The names of the chapter's tasks, read from its grader without importing the learner's side."""
    return [t.name for t in exercises.load_grader(EXERCISES / chapter).TASKS]


def functions(path: Path) -> dict[str, ast.FunctionDef]:
    """The top-level functions of a Python file, by name."""
    tree = ast.parse(path.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def body_lines(path: Path, node: ast.FunctionDef) -> set[str]:
    """The stripped code lines of a function's body (no docstring, no comments, no short lines)."""
    source = path.read_text().splitlines()
    body = node.body[1:] if ast.get_docstring(node) is not None else node.body
    lines = set()
    for statement in body:
        for line in source[statement.lineno - 1:statement.end_lineno]:
            code = line.split("#", 1)[0].strip()
            if len(code) >= SHORTEST_COPIED_LINE:
                lines.add(code)
    return lines


# --- hints ------------------------------------------------------------------------------------
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_task_has_progressive_hints(chapter):
    hints = exercises.load_hints(EXERCISES / chapter)
    names = task_names(chapter)
    assert sorted(hints) == sorted(names), f"{chapter}/hints.py must hold the hints of exactly the tasks {names}"
    for name in names:
        assert len(hints[name]) >= 2, f"{chapter}: {name} needs at least two hints (a nudge, then the steps)"
        assert all(h.strip() for h in hints[name]), f"{chapter}: {name} has an empty hint"
        assert len(set(hints[name])) == len(hints[name]), f"{chapter}: {name} repeats a hint"


def results(*statuses: str) -> list[TaskResult]:
    return [TaskResult(f"task_{i}", "", status) for i, status in enumerate(statuses)]


@pytest.fixture
def chapter_with_hints(tmp_path):
    folder = tmp_path / "07_fake"
    folder.mkdir()
    (folder / "hints.py").write_text('HINTS = {"task_0": ["one"], "task_1": ["first", "second", "third"]}\n')
    return folder


def test_hints_are_revealed_one_at_a_time_and_remembered(chapter_with_hints, tmp_path):
    state = tmp_path / "state" / "hints.json"
    graded = results(PASS, FAIL)
    shown = [exercises.reveal_hint(chapter_with_hints, graded, state_path=state).hints for _ in range(4)]
    assert shown == [("first",), ("first", "second"), ("first", "second", "third"), ("first", "second", "third")]
    text = exercises.format_hints(exercises.reveal_hint(chapter_with_hints, graded, state_path=state), "cmd --hint")
    assert "3/3  third" in text and "last hint" in text
    # another task keeps its own count; a reset starts the chapter again
    assert exercises.reveal_hint(chapter_with_hints, graded, "task_0", state_path=state).hints == ("one",)
    exercises.reset_hints(chapter_with_hints, state_path=state)
    assert exercises.reveal_hint(chapter_with_hints, graded, state_path=state).hints == ("first",)


def test_hint_for_a_passing_chapter_an_unknown_task_and_a_task_without_hints(chapter_with_hints, tmp_path):
    state = tmp_path / "hints.json"
    assert "no hint needed" in exercises.reveal_hint(chapter_with_hints, results(PASS, PASS), state_path=state).message
    with pytest.raises(ExerciseError, match="no task 'nope'.*task_0, task_1"):
        exercises.reveal_hint(chapter_with_hints, results(PASS, PASS), "nope", state_path=state)
    graded = results(PASS, PASS, FAIL)
    assert "no hints written for task_2" in exercises.reveal_hint(chapter_with_hints, graded, state_path=state).message
    assert not state.exists()  # nothing revealed, nothing remembered


def test_an_unreadable_state_file_counts_as_nothing_revealed(chapter_with_hints, tmp_path):
    state = tmp_path / "hints.json"
    state.write_text("{not json")
    assert exercises.reveal_hint(chapter_with_hints, results(FAIL, PASS), state_path=state).hints == ("one",)


def test_bad_hints_file_is_a_clear_error(tmp_path):
    (tmp_path / "hints.py").write_text('HINTS = {"task": "not a list"}\n')
    with pytest.raises(ExerciseError, match="must define HINTS"):
        exercises.load_hints(tmp_path)


def test_cli_hint_reveals_the_next_hint_of_the_first_unfinished_task(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(exercises.HINTS_FILE_ENV, str(tmp_path / "hints.json"))
    hints = exercises.load_hints(EXERCISES / "01_backbone")
    first_task = task_names("01_backbone")[0]
    assert cli.main(["check", "01"]) == 1  # the stub: every task TODO
    assert f"stuck on {first_task}? `mrcnn-np check 01 --hint`" in capsys.readouterr().out
    for shown in (1, 2):
        assert cli.main(["check", "01", "--hint"]) == 1
        out = capsys.readouterr().out
        assert f"Hints for {first_task}:" in out
        assert f"{shown}/{len(hints[first_task])}  {hints[first_task][shown - 1].splitlines()[0]}" in out
        assert f"{shown + 1}/" not in out
    second_task = task_names("01_backbone")[1]
    assert cli.main(["check", "01", "--hint", second_task]) == 1
    assert f"1/{len(hints[second_task])}" in capsys.readouterr().out
    assert cli.main(["check", "01", "--hint", "no_such_task"]) == 2
    assert "no task 'no_such_task'" in capsys.readouterr().err
    assert cli.main(["check", "01", "--reset-hints", "--hint"]) == 1
    out = capsys.readouterr().out
    assert "hidden again" in out and f"1/{len(hints[first_task])}" in out and f"2/{len(hints[first_task])}" not in out


def test_cli_hint_when_every_task_passes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(exercises.HINTS_FILE_ENV, str(tmp_path / "hints.json"))
    solution = EXERCISES / "solutions" / "01_backbone.py"
    assert cli.main(["check", "01", "--path", str(solution), "--hint"]) == 0
    out = capsys.readouterr().out
    assert "no hint needed" in out and "stuck on" not in out


# --- stubs state the contract -------------------------------------------------------------------
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stub_docstrings_state_the_contract_not_the_algorithm(chapter):
    stub = EXERCISES / chapter / exercises.load_grader(EXERCISES / chapter).STUB
    solution = EXERCISES / "solutions" / f"{chapter}.py"
    stub_functions, solution_functions = functions(stub), functions(solution)
    for name, node in stub_functions.items():
        docstring = ast.get_docstring(node) or ""
        code_like = [line for line in docstring.splitlines() if CODE_LINE.match(line)]
        assert not code_like, f"{chapter}: {name}'s docstring reads as code (move the steps to hints.py): {code_like}"
        steps = steps_in(docstring)
        assert not steps, f"{chapter}: {name}'s docstring lists the steps in order (move them to hints.py): {steps}"
        if name in solution_functions:
            copied = [line for line in body_lines(solution, solution_functions[name]) if line in docstring]
            assert not copied, f"{chapter}: {name}'s docstring repeats the solution's code: {copied}"


def test_the_contract_rule_recognises_code():
    """The rule above is not vacuous: a docstring in the old style (the loop in pseudo-code) breaks it."""
    old_style = ["offset = 0.5 if aligned else 0", "    x1, y1, x2, y2 = each coordinate * spatial_scale - offset",
                 "if y_low >= H - 1:", "    for i in range(g_h):", "count += 1"]
    contract = ["features: (N, C, H, W) float64; rois: (R, 5) rows batch_index, x1, y1, x2, y2.",
                "Returns (R, C, ph, pw): torchvision.ops.roi_align's output (Mask R-CNN, section 3).",
                "the level is floor(k0 + log2(sqrt(area) / 224) + eps), clipped; x == y compares."]
    assert all(CODE_LINE.match(line) for line in old_style)
    assert not any(CODE_LINE.match(line) for line in contract)


def test_the_contract_rule_recognises_ordered_steps():
    """The step rule is not vacuous either: numbered steps and a first-then-next-finally recipe break it, while
    contract prose (numbers, decimals, "then" in an order of the output, an edge case) passes."""
    numbered = ["1. scores = softmax over the K classes", "  2) decode every class's deltas", "10. sort by score",
                "Step 3: clip the boxes to the image", "    step 4 -- NMS within each class", "3.", "step2 keep"]
    assert all(STEP_LINE.match(line) for line in numbered)
    assert steps_in("\n".join(numbered)) == [line.strip() for line in numbered]
    recipe = ("Round the corners first, then cut the box into bins;\n"
              "next take each bin's maximum, and finally write 0 where a bin is empty.")
    assert steps_in(recipe) == ["3 sequence words: then, next, finally"]
    assert steps_in("THEN a. Then b.\nThen c.") == ["3 sequence words: then, then, then"]
    contract = ("features: (N, C, H, W) float64; rois: (R, 5) rows batch_index, x1, y1, x2, y2.\n"
                "Returns (R, C, ph, pw): exactly torchvision.ops.roi_pool's numbers; a bin that covers no pixel\n"
                "0.5 d^2 / beta where |d| < beta; 1 x 1 pixel at least; 2.5 rounds to 3, (0, 4) when empty.\n"
                "ordered by level, then location (row-major), then anchor; R may be 0: a (0, 4) array.\n"
                "Ties: the first index wins; the steps are in hints.py; a step size of 2; nextafter; thence.")
    assert not any(STEP_LINE.match(line) for line in contract.splitlines())
    assert steps_in(contract) == []
