"""The ``mrcnn-np`` command line: one subcommand per task, one function per subcommand.

``mrcnn-np demo`` is the foundation demo (a small CNN trained on procedural shapes);
the Mask R-CNN commands (check, verify, train, evaluate, predict, convert) join it as
they are written. To add one, write ``_add_<name>(subparsers)`` that declares its
parser and ``set_defaults(run=<function>)``, and list it in :data:`COMMANDS`; the
function takes the parsed arguments and returns the exit status.

Heavy imports (matplotlib, the model) happen inside the command functions, so
``mrcnn-np --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__

# --- demo --------------------------------------------------------------------------------
DEMO_MIN_ACCURACY = 0.9  # below this test accuracy the demo exits with status 1


def _add_demo(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="foundation demo: train a small CNN on procedural shapes",
        description=(
            "Foundation demo: trains a small CNN built from mrcnn_np.nn on procedural "
            "shapes (squares, circles, triangles), reports its test accuracy and writes "
            "a loss curve and a grid of predictions. The Mask R-CNN demo replaces it when "
            f"the model exists. Exits with status 1 if the test accuracy is below "
            f"{DEMO_MIN_ACCURACY}."
        ),
    )
    p.add_argument("--steps", type=_positive_int, default=300,
                   help="training steps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--out", default="runs/demo",
                   help="folder for the figures (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Train and test the shape classifier; print the accuracy and the figure paths."""
    from .quickstart import train_shape_classifier

    result = train_shape_classifier(steps=args.steps, seed=args.seed,
                                    progress=not args.no_progress, out_dir=args.out)
    print(f"test accuracy: {result['test_accuracy']:.3f}  "
          f"(final training loss {result['final_loss']:.4f}, {result['seconds']:.1f} s)")
    for path in result["figures"]:
        print(f"figure: {path}")
    if result["test_accuracy"] < DEMO_MIN_ACCURACY:
        print(f"error: test accuracy below {DEMO_MIN_ACCURACY}", file=sys.stderr)
        return 1
    return 0


# --- check -------------------------------------------------------------------------------
def _add_check(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="grade an exercise: mrcnn-np check 01 [--path my_copy.py]",
        description=(
            "Grades your solution of a chapter's exercise (exercises/NN_stage/) task by task "
            "against mrcnn_np and, when installed, torch, and prints a report. Exits with "
            "status 0 when every task passes, 1 when one does not (or your file does not "
            "import), 2 when the chapter or a file cannot be found."
        ),
    )
    p.add_argument("chapter", help="the chapter: 01, 1 or 01_backbone")
    p.add_argument("--path", default=None,
                   help="your file to grade (default: the chapter's stub, exercises/NN_stage/exercise.py)")
    p.add_argument("--exercises-dir", default=None,
                   help="the exercises folder (default: ./exercises, else the one next to the package)")
    p.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Grade the learner's file on every task of the chapter and print the report."""
    from pathlib import Path

    from .exercises import ExerciseError, find_chapter, format_report, grade, load_grader

    try:
        chapter_dir = find_chapter(args.chapter, args.exercises_dir)
        path = Path(args.path) if args.path else chapter_dir / load_grader(chapter_dir).STUB
        if not path.is_file():
            raise ExerciseError(f"no such file: {path}")
    except ExerciseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        results = grade(chapter_dir, path)
    except ExerciseError as exc:  # the learner's file does not import
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_report(results, title=f"Exercise {chapter_dir.name}: grading {path.resolve()}"))
    return 0 if all(r.passed for r in results) else 1


# --- the parser --------------------------------------------------------------------------
# --- verify -------------------------------------------------------------------------------
def _add_verify(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="compare every stage with torchvision on a photograph (needs the reference extra)",
        description=(
            "Builds torchvision's Mask R-CNN (ResNet-50-FPN) with seeded random weights, loads them into "
            "mrcnn_np's, runs both on a photograph matplotlib ships and prints a stage-by-stage table of "
            "the largest differences: transform, backbone levels, proposals, box head, detections, masks. "
            "Needs torch and torchvision: pip install 'mrcnn-np[reference]'."
        ),
    )
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="arithmetic of both models (default: %(default)s)")
    p.add_argument("--min-size", type=_positive_int, default=512,
                   help="shorter image side after resizing (torchvision's default is 800; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)")
    p.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Print the agreement table; status 2 when torchvision is missing."""
    import numpy as np

    from .verify import format_table, verify

    dtype = np.dtype(args.dtype)
    try:
        rows = verify(dtype=dtype, seed=args.seed, min_size=args.min_size, max_size=max(1333, args.min_size))
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(rows, dtype))
    return 0


COMMANDS = (_add_demo, _add_check, _add_verify)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="mrcnn-np",
        description="mrcnn-np: Mask R-CNN written out in NumPy, verified against torchvision.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True,
                                       metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit status."""
    args = build_parser().parse_args(argv)
    return args.run(args)


def _positive_int(text: str) -> int:
    """argparse type: a positive integer, or a readable error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
