"""Self-grading exercises: find a chapter's grader, run its tasks on a learner's file, report.

Each chapter ``NN`` has a folder ``exercises/NN_stage/`` with a README, a stub the learner
fills in (``exercise.py``) and ``grader.py``, which defines

- ``STUB``: the stub's file name, graded when no other file is given;
- ``TASKS``: a list of :class:`Task`. ``task.check(module)`` receives the learner's file as
  an imported module and raises ``AssertionError`` with a readable message when a result is
  wrong; it may return a short note for the report (e.g. that torch was not installed);
- optionally ``prepare()``, called by :func:`grade` before the learner's file is imported
  (chapter 08 chooses there where numba.cuda runs, which must happen before numba is imported).

Next to it, ``mistakes.py`` may hold the chapter's classic mistakes, each declared once as a
change to the reference solution (``exercises/solutions/NN_stage.py``) and a hint;
:class:`Mistakes` recognises them in a learner's results (see there).

:func:`grade` runs every task, each on its own (one failing never stops the others), and
:func:`format_report` renders the results; ``mrcnn-np check NN`` does both. Only the
standard library and NumPy are needed here; graders import whatever references they use.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import itertools
import re
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

PASS, FAIL, TODO = "PASS", "FAIL", "TODO"
_module_ids = itertools.count()


class ExerciseError(Exception):
    """Grading could not start: no exercises folder, unknown chapter, unloadable file."""


@dataclass(frozen=True)
class Task:
    """One graded task: ``check(module)`` raises on a wrong answer, else returns a note or None."""

    name: str
    description: str
    check: Callable[[ModuleType], str | None]


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one task: ``status`` is PASS, FAIL or TODO (NotImplementedError)."""

    name: str
    description: str
    status: str
    message: str = ""  # why it failed, or what is not implemented
    note: str | None = None  # e.g. "torch not installed: compared with mrcnn_np only"
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == PASS


# --- finding chapters ------------------------------------------------------------------------
def _package_exercises_dir() -> Path:
    """``exercises/`` next to the package: the repository root of a clone (editable install)."""
    return Path(__file__).resolve().parents[1] / "exercises"


def _chapter_dirs(exercises_dir: Path) -> list[Path]:
    """Folders ``NN_name`` holding a ``grader.py``, sorted by number."""
    return sorted(p.parent for p in exercises_dir.glob("[0-9][0-9]_*/grader.py"))


def find_exercises_dir(exercises_dir: str | Path | None = None) -> Path:
    """The ``exercises/`` folder: ``exercises_dir`` if given, else ``./exercises``, else the
    one next to the installed package. Raises ExerciseError naming every place searched."""
    if exercises_dir is not None:
        candidates = [Path(exercises_dir)]
    else:
        candidates = [Path.cwd() / "exercises", _package_exercises_dir()]
    for candidate in candidates:
        if candidate.is_dir() and _chapter_dirs(candidate):
            return candidate.resolve()
    searched = "\n".join(f"  {c}" for c in candidates)
    hint = ("Is that the path of the repository's exercises/ folder?" if exercises_dir is not None
            else "Run from the repository root, or pass --exercises-dir path/to/exercises.")
    raise ExerciseError(f"no exercises folder with chapters (NN_name/grader.py) found; searched:\n{searched}\n{hint}")


def find_chapter(chapter: str | int | Path, exercises_dir: str | Path | None = None) -> Path:
    """The folder of a chapter given as ``1``, ``"01"``, ``"01_backbone"`` or ``"backbone"``;
    a Path to a chapter folder is returned as it is."""
    if isinstance(chapter, Path) and (chapter / "grader.py").is_file():
        return chapter.resolve()
    root = find_exercises_dir(exercises_dir)
    chapters = _chapter_dirs(root)
    text = str(chapter).strip()
    for folder in chapters:
        number, _, name = folder.name.partition("_")
        if text in (folder.name, name) or (text.isdigit() and int(text) == int(number)):
            return folder
    available = ", ".join(c.name for c in chapters)
    raise ExerciseError(f"unknown chapter {text!r} in {root}; available: {available}")


# --- loading files ---------------------------------------------------------------------------
def load_module(path: str | Path) -> ModuleType:
    """Import the Python file at ``path`` under a fresh, unique module name.

    Raises ExerciseError when the file is missing or fails to import (syntax error, ...)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ExerciseError(f"no such file: {path}")
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_mrcnn_np_exercise_{next(_module_ids)}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the learner's folder
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ExerciseError(f"could not import {path}:\n{_describe_exception(exc, path)}") from exc
    finally:
        sys.dont_write_bytecode = write_bytecode
    return module


def load_grader(chapter_dir: Path) -> ModuleType:
    """A chapter's ``grader.py``, checked to define ``STUB`` and ``TASKS``."""
    grader = load_module(chapter_dir / "grader.py")
    if not isinstance(getattr(grader, "STUB", None), str) or not getattr(grader, "TASKS", None):
        raise ExerciseError(f"{chapter_dir / 'grader.py'} must define STUB (a file name) and TASKS (Tasks)")
    return grader


# --- grading -----------------------------------------------------------------------------------
def grade(chapter: str | int | Path, path: str | Path | None = None,
          exercises_dir: str | Path | None = None, grader=None) -> list[TaskResult]:
    """Grade the learner's file ``path`` (default: the chapter's stub) on every task of
    ``chapter``; one :class:`TaskResult` per task, in the grader's order. ``grader``: the chapter's
    grader module when the caller has loaded it already (else it is loaded here)."""
    chapter_dir = find_chapter(chapter, exercises_dir)
    grader = load_grader(chapter_dir) if grader is None else grader
    learner_path = Path(path) if path is not None else chapter_dir / grader.STUB
    if hasattr(grader, "prepare"):
        grader.prepare()
    module = load_module(learner_path)
    return [run_task(task, module) for task in grader.TASKS]


def run_task(task: Task, module: ModuleType) -> TaskResult:
    """Run one task's check, turning any exception into a FAIL (TODO for NotImplementedError)."""
    start = time.perf_counter()
    status, message, note = PASS, "", None
    try:
        note = task.check(module)
    except NotImplementedError as exc:
        where = _where(exc, module.__file__, code=False)
        message = f"not implemented yet: {str(exc) or type(exc).__name__}" + (f"  ({where})" if where else "")
        status = TODO
    except AssertionError as exc:
        status, message = FAIL, str(exc) or "assertion failed"
    except Exception as exc:  # the learner's code crashed: say what and where
        status, message = FAIL, "raised " + _describe_exception(exc, module.__file__)
    return TaskResult(task.name, task.description, status, message, note, time.perf_counter() - start)


def _where(exc: BaseException, learner_file: str | Path, code: bool = True) -> str:
    """``file, line n, in f[: code]`` of the line that raised ``exc``, preferring the learner's file."""
    frames = traceback.extract_tb(exc.__traceback__)
    learner_file = str(Path(learner_file).resolve())
    own = [f for f in frames if str(Path(f.filename).resolve()) == learner_file]
    frame = own[-1] if own else (frames[-1] if frames else None)
    if frame is None:
        return ""
    return f"{Path(frame.filename).name}, line {frame.lineno}, in {frame.name}" + (
        f": {frame.line.strip()}" if code and frame.line else "")


def _describe_exception(exc: BaseException, learner_file: str | Path) -> str:
    """``Type: message`` and, on the next line, where it was raised."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = "" if isinstance(exc, SyntaxError) else _where(exc, learner_file)  # SyntaxError names its line
    return text + (f"\n  at {where}" if where else "")


def format_report(results: list[TaskResult], title: str | None = None) -> str:
    """One line per task (PASS / FAIL / TODO, name, description, time, note), the reason for
    a failure indented below it, and a final ``k/n tasks passed``."""
    name_width = max((len(r.name) for r in results), default=0)
    description_width = max((len(r.description) for r in results), default=0)
    lines = [title, ""] if title else []
    for r in results:
        line = f"{r.status}  {r.name:<{name_width}}  {r.description:<{description_width}}  {r.seconds:5.2f} s"
        lines.append(line + (f"  ({r.note})" if r.note else ""))
        lines += ["      " + part for part in r.message.splitlines() if r.status != PASS]
    passed = sum(r.passed for r in results)
    lines += ["", f"{passed}/{len(results)} tasks passed"]
    return "\n".join(lines)


# --- hints: the steps of a task, revealed one at a time ------------------------------------------
HINTS_FILE_ENV = "MRCNN_NP_HINTS_FILE"


def load_hints(chapter_dir: Path) -> dict[str, list[str]]:
    """``HINTS`` of the chapter's ``hints.py`` (task name -> hints, from a nudge to nearly the
    code); ``{}`` when the chapter has none."""
    path = Path(chapter_dir) / "hints.py"
    if not path.is_file():
        return {}
    hints = getattr(load_module(path), "HINTS", None)
    if not isinstance(hints, dict) or not all(
            isinstance(h, list) and all(isinstance(t, str) for t in h) for h in hints.values()):
        raise ExerciseError(f"{path} must define HINTS, a dict of task name -> list of hints (strings)")
    return hints


def hints_file() -> Path:
    """Where the hints revealed so far are remembered: ``$MRCNN_NP_HINTS_FILE``, else
    ``$XDG_CACHE_HOME/mrcnn-np/hints.json`` (``~/.cache`` by default)."""
    import os

    if os.environ.get(HINTS_FILE_ENV):
        return Path(os.environ[HINTS_FILE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mrcnn-np" / "hints.json"


def _read_revealed(path: Path) -> dict:
    import json

    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):  # no file yet, or unreadable: nothing revealed
        return {}
    return state if isinstance(state, dict) else {}


@dataclass(frozen=True)
class HintReveal:
    """What ``--hint`` shows: ``hints[:shown]`` of ``task`` (of ``total``), or only ``message``."""

    task: str | None
    hints: tuple[str, ...] = ()
    total: int = 0
    message: str = ""
    saved: bool = True  # False when the state file could not be written


def reveal_hint(chapter_dir: Path, results: list[TaskResult], task: str | None = None,
                state_path: Path | None = None) -> HintReveal:
    """One more hint of ``task`` (default: the first task that does not pass), remembered in
    ``state_path`` (default :func:`hints_file`) so that the next call shows the next one."""
    import json

    chapter_dir = Path(chapter_dir)
    hints = load_hints(chapter_dir)
    names = [r.name for r in results]
    if task is None:
        task = next((r.name for r in results if not r.passed), None)
        if task is None:
            return HintReveal(None, message="every task passes: no hint needed")
    elif task not in names:
        raise ExerciseError(f"no task {task!r} in {chapter_dir.name}; its tasks: {', '.join(names)}")
    steps = hints.get(task, [])
    if not steps:
        return HintReveal(task, message=f"no hints written for {task} yet; read the chapter's README")
    state_path = Path(state_path) if state_path is not None else hints_file()
    state = _read_revealed(state_path)
    chapter_state = state.get(chapter_dir.name) if isinstance(state.get(chapter_dir.name), dict) else {}
    previous = chapter_state.get(task, 0)
    shown = min((previous if isinstance(previous, int) and previous > 0 else 0) + 1, len(steps))
    state[chapter_dir.name] = {**chapter_state, task: shown}
    try:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(state, indent=1, sort_keys=True))
        saved = True
    except OSError:
        saved = False
    return HintReveal(task, tuple(steps[:shown]), len(steps), saved=saved)


def reset_hints(chapter_dir: Path, state_path: Path | None = None) -> None:
    """Forget which hints of the chapter were revealed (the next ``--hint`` shows the first again)."""
    import json

    state_path = Path(state_path) if state_path is not None else hints_file()
    state = _read_revealed(state_path)
    if state.pop(Path(chapter_dir).name, None) is not None:
        state_path.write_text(json.dumps(state, indent=1, sort_keys=True))


def format_hints(reveal: HintReveal, command: str) -> str:
    """The revealed hints, numbered, and what ``command`` (e.g. ``mrcnn-np check 04 --hint``) does next."""
    if not reveal.hints:
        return reveal.message
    lines = [f"Hints for {reveal.task}:"]
    for i, hint in enumerate(reveal.hints, 1):
        first, *rest = hint.splitlines() or [""]
        lines.append(f"  {i}/{reveal.total}  {first}")
        lines += [f"        {line}" for line in rest]
    if len(reveal.hints) < reveal.total:
        lines.append(f"(run `{command}` again for hint {len(reveal.hints) + 1} of {reveal.total})")
    else:
        lines.append("(that was the last hint; the reference solution is in exercises/solutions/)")
    if not reveal.saved:
        lines.append(f"(could not remember the hints shown: {hints_file()} is not writable; set "
                     f"{HINTS_FILE_ENV} to a writable file)")
    return "\n".join(lines)


# --- helpers for graders -------------------------------------------------------------------------
def function(module: ModuleType, name: str) -> Callable:
    """The learner's function ``name``, written in their own file (not imported from elsewhere)."""
    fn = getattr(module, name, None)
    if fn is None:
        raise AssertionError(f"your file defines no function {name!r}; keep the stub's function names")
    if not callable(fn):
        raise AssertionError(f"{name} in your file is a {type(fn).__name__}, not a function")
    origin = getattr(fn, "__module__", module.__name__)
    if origin != module.__name__:
        raise AssertionError(f"{name} in your file is {origin}.{name}, imported from elsewhere; write it yourself")
    return fn


def optional_import(name: str) -> ModuleType | None:
    """``import name``, or None when it is not installed (torch is a dev dependency only)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def not_installed_note(package: str) -> str:
    """The note a task returns when it skipped its comparison with ``package``."""
    return f"{package} not installed: compared with mrcnn_np only"


def shape_str(shape) -> str:
    """``(2, 3)`` for a shape tuple (plain ints, no ``np.int64(...)``)."""
    return str(tuple(int(d) for d in shape))


def assert_close(received, expected, what: str, rtol: float = 1e-10, row: Callable | None = None) -> None:
    """Fail unless ``received`` has ``expected``'s shape and ``max|received - expected| <=
    rtol * max|expected|`` (``rtol`` absolute when ``expected`` is all zeros).

    ``what`` says what was compared, e.g. ``"im2col(x (2, 3, 7, 5), ...) vs mrcnn_np"``; the
    message adds the shapes, or the largest error with its index and both values, and
    ``row(i)`` of its index ``i`` along the first axis (e.g. the box of a mask)."""
    expected = np.asarray(expected, dtype=np.float64)
    received = as_float_array(received, expected.shape, what)
    if expected.size == 0:
        return
    expected, received = np.atleast_1d(expected), np.atleast_1d(received)  # 0-d (scalar losses) too
    diff = np.abs(received - expected)
    diff[np.isnan(diff)] = np.inf  # NaN is never close
    scale = float(np.abs(expected).max())
    allowed = rtol * scale if scale > 0 else rtol
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    error = float(diff[worst])
    if error <= allowed:
        return
    index = tuple(int(i) for i in worst)
    raise AssertionError(
        f"{what}: values differ\n"
        f"max abs error {error:.3g} at index {index}: expected {expected[worst]:.6g}, got {received[worst]:.6g} "
        f"(allowed {allowed:.1e} = {rtol:.0e} x max|expected|)"
        + (f"\nthe largest error is in {row(index[0])}" if row else "")
    )


def torch_modules(*names):
    """``(modules, None)``, or ``(None, note for the report)`` when torch or torchvision is missing.

    Graders call it after the learner's first result is checked, so an unfinished task stays fast."""
    modules = [optional_import(n) for n in names]
    missing = sorted({n.split(".")[0] for n, m in zip(names, modules, strict=True) if m is None})
    return (None, not_installed_note(" and ".join(missing))) if missing else (modules, None)


def references(library, torch_names, torch_reference):
    """``([library] + [torch_reference(*modules)], note)``: each reference a ``(name, expected)``, the
    second only when torch and the modules ``torch_names`` are installed (else ``note`` says so)."""
    modules, note = torch_modules(*torch_names)
    return [library] + ([torch_reference(*modules)] if modules else []), note


def for_each_case(cases: Callable, check_case: Callable) -> Callable[[ModuleType], str | None]:
    """A task's check: ``check_case(module, *case)`` for each case of ``cases()``; returns the last note."""
    def check(module):
        note = None
        for case in cases():
            note = check_case(module, *case)
        return note
    return check


def caller(*args, **kwargs) -> Callable:
    """``call(function)``: ``function`` run on copies of these arguments, the learner's or a broken solution's."""
    return lambda function: function(*copies(args), **copies(kwargs))


def compare(got, refs, check, hint=None) -> None:
    """``check(got, expected, name)`` (which raises AssertionError when ``got`` is wrong) for each
    ``(name, expected)`` of ``refs``; a failure's message ends with ``hint(expected)`` unless it has a hint."""
    for name, expected in refs:
        try:
            check(got, expected, name)
        except AssertionError as error:
            raise hinted(error, hint(expected) if hint and "\nhint: " not in str(error) else None) from None


def hinted(error, hint):
    """``error`` (an AssertionError) with ``hint`` (a line, or None) added to its message."""
    return AssertionError(f"{error}\nhint: {hint}") if hint else error


def fmt_vector(values) -> str:
    """``[1.5, -2, 30.25]`` for a short vector (6 significant digits)."""
    return "[" + ", ".join(f"{float(v):.6g}" for v in np.asarray(values, dtype=np.float64).reshape(-1)) + "]"


def as_array(received, expected_shape, what, kind="an array", dtype=None):
    """``received`` as a NumPy array of any shape, or an AssertionError naming ``kind`` and ``expected_shape``."""
    if received is None:
        raise AssertionError(f"{what}:\nexpected {kind} of shape {shape_str(expected_shape)}, got None "
                             "(a missing return?)")
    try:
        return np.asarray(received, dtype=dtype)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}:\nexpected {kind} of shape {shape_str(expected_shape)}, "
                             f"got {type(received).__name__}") from None


def as_float_array(received, expected_shape, what):
    """``received`` as a float64 array of ``expected_shape``, or a readable AssertionError."""
    received = as_array(received, expected_shape, what, dtype=np.float64)
    if received.shape != tuple(expected_shape):
        raise AssertionError(f"{what}:\nexpected shape {shape_str(expected_shape)}, got {shape_str(received.shape)}")
    return received


def call_learner(ex, fn, args, what, hint=None, kwargs=None):
    """``fn(*args, **kwargs)``; an error it raises (but NotImplementedError: TODO) becomes an
    AssertionError naming the case, the error, the line of the learner's file ``ex``, and
    ``hint(error)``."""
    try:
        return fn(*args, **(kwargs or {}))
    except NotImplementedError:
        raise
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        own = [f for f in frames if Path(f.filename).resolve() == Path(ex.__file__).resolve()]
        frame = own[-1] if own else frames[-1]
        where = f"{Path(frame.filename).name}, line {frame.lineno}, in {frame.name}" + (
            f": {frame.line.strip()}" if frame.line else "")
        error = AssertionError(f"{what}:\nraised {type(exc).__name__}: {exc}\n  at {where}")
        raise hinted(error, hint(exc) if hint else None) from None


def copies(value):
    """``value`` with every array in it copied (in tuples, lists and dicts too): what a learner's
    function receives, so that it cannot change the grader's."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: copies(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(copies(v) for v in value)
    return value


def as_tuple(got, length: int, what: str, names: str):
    """``got`` when it is a tuple (or list) of ``length`` results, else an AssertionError naming ``names``."""
    if not isinstance(got, (tuple, list)) or len(got) != length:
        size = f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
        raise AssertionError(f"{what}:\nexpected a tuple {names}, got {type(got).__name__}{size}")
    return got


def assert_close_scalar(received, expected: float, what: str, rtol: float = 1e-10) -> None:
    """Fail unless ``received`` is one number (a float or a 0-d array) within ``rtol`` of
    ``expected`` (absolutely, when it is 0)."""
    if received is None:
        raise AssertionError(f"{what}:\nexpected a float, got None (a missing return?)")
    try:
        value = np.asarray(received, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}:\nexpected a float, got {type(received).__name__}") from None
    if value.shape != ():
        raise AssertionError(f"{what}:\nexpected a float (one number), got an array of shape {shape_str(value.shape)}")
    value = float(value)
    allowed = rtol * abs(expected) if expected != 0 else rtol
    if not abs(value - expected) <= allowed:  # NaN fails
        raise AssertionError(f"{what}: values differ\nexpected {expected:.10g}, got {value:.10g} "
                             f"(abs error {abs(value - expected):.3g}, allowed {allowed:.1e})")


def central_difference(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6,
                       index: np.ndarray | None = None) -> np.ndarray:
    """d f / d x by central differences, ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``, float64.

    ``f`` maps an array of ``x``'s shape to a number (a loss, or ``sum(grad_out * forward(x))``);
    ``x`` is not changed. With ``index`` (flat positions), only those entries are computed and
    the rest of the result is NaN: a few dozen probes judge a gradient of thousands of entries."""
    x = np.array(x, dtype=np.float64)  # a copy: probes write into it
    flat = x.reshape(-1)  # (x.size,) a view of the copy
    grad = np.full(x.size, np.nan) if index is not None else np.empty(x.size)
    for i in (range(x.size) if index is None else np.asarray(index).reshape(-1)):
        saved = flat[i]
        flat[i] = saved + eps
        plus = float(f(x))
        flat[i] = saved - eps
        minus = float(f(x))
        flat[i] = saved
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(x.shape)


def assert_gradient(received, f: Callable[[np.ndarray], float], x: np.ndarray, what: str, rtol: float = 1e-6,
                    probes: int | None = 64, eps: float = 1e-6, seed: int = 0) -> None:
    """Fail unless the gradient ``received`` (of ``x``'s shape) matches central differences of
    ``f`` at ``x`` to ``rtol`` of the largest difference quotient, at ``probes`` random entries
    (all when ``probes`` is None or x is small): the judge of a backward pass that needs no
    reference implementation."""
    received = as_float_array(received, np.shape(x), what)
    size = int(np.size(x))
    index = None if probes is None or size <= probes else np.random.default_rng(seed).choice(size, probes,
                                                                                            replace=False)
    numeric = central_difference(f, x, eps, index)
    probed = ~np.isnan(numeric)
    expected = np.where(probed, numeric, 0.0)
    assert_close(np.where(probed, received, 0.0), expected, f"{what} vs central differences (eps {eps:g})", rtol)


def wrong_on(function: Callable, cases) -> tuple | None:
    """The first ``args`` of ``cases`` ((args, expected) pairs) on which ``function(*args)`` is not
    ``expected``, or None: e.g. the learner's helper that a later task calls. A crash counts as
    not written yet (None)."""
    try:
        for args, expected in cases:
            if not matches(function(*copies(args)), expected):
                return args
    except Exception:
        return None
    return None


# --- mistakes: each declared once, recognised by running it ---------------------------------------
@dataclass(frozen=True)
class Mistake:
    """A classic mistake in ``task``: the reference solution with ``changes`` made, each an
    (old text, new text) pair, is that mistake; ``hint`` is said to a learner who returns what it returns."""

    task: str
    name: str
    changes: tuple[tuple[str, str], ...]
    hint: str


def apply_changes(source: str, changes) -> str:
    """``source`` with each (old, new) change made; each ``old`` must occur exactly once."""
    for old, new in changes:
        count = source.count(old)
        if count != 1:
            raise ValueError(f"the solution holds {old!r} {count} times, not once")
        source = source.replace(old, new)
    return source


@functools.cache
def broken_solution(solution: Path, changes: tuple[tuple[str, str], ...]) -> ModuleType:
    """The solution with ``changes`` made, imported as a module (once per change)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "broken_solution.py"
        path.write_text(apply_changes(solution.read_text(), changes))
        return load_module(path)


def matches(a, b, rtol: float = 1e-9) -> bool:
    """Whether two results are the same: two tuples item by item, arrays of one shape within ``rtol``
    (NaN where the other has NaN)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(matches(x, y, rtol) for x, y in zip(a, b, strict=True))
    try:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=1e-12, equal_nan=True))


class Mistakes:
    """A chapter's table of mistakes (``MISTAKES`` in the ``mistakes.py`` next to ``grader_file``:
    ``{task: [(name, [(old, new), ...], hint), ...]}``) and the grader's way to recognise one."""

    def __init__(self, grader_file: str | Path):
        chapter = Path(grader_file).resolve().parent
        table = load_module(chapter / "mistakes.py").MISTAKES
        self.solution = chapter.parent / "solutions" / f"{chapter.name}.py"
        self.by_task = {task: [Mistake(task, name, tuple(map(tuple, changes)), hint) for name, changes, hint in rows]
                        for task, rows in table.items()}

    def __iter__(self):
        return itertools.chain.from_iterable(self.by_task.values())

    def hint(self, task: str, got, expected, call: Callable, parts: Callable | None = None,
             rtol: float = 1e-9, same: Callable | None = None) -> str | None:
        """The hint of the first mistake of ``task`` whose broken solution returns ``got`` where
        the solution returns ``expected``: ``call(function)`` runs the broken solution's function
        ``task`` on the case. ``parts(result)`` splits a result into parts that are recognised
        each on its own (e.g. the x and the y coordinates, when they are computed apart); ``rtol``
        how close to the broken solution's result is the same, or ``same(a, b)`` whether two
        results (parts) are the same, for results :func:`matches` cannot compare."""
        parts = parts or (lambda result: [result])
        same = same or (lambda a, b: matches(a, b, rtol))
        for mistake in self.by_task.get(task, []):
            try:
                function = getattr(broken_solution(self.solution, mistake.changes), task)
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    result = call(function)
                if any(same(g, r) and not same(r, e) for g, r, e in zip(
                        parts(got), parts(result), parts(expected), strict=True)):
                    return mistake.hint
            except Exception:  # the mistake crashes on this case, or a part does not apply to ``got``
                continue
        return None
