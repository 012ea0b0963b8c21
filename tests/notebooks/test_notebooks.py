"""The chapter notebooks: every ``notebooks/*.ipynb`` is paired with a jupytext percent ``.py``,
the pair is in sync, the ``.ipynb`` is committed without outputs, and it runs top to bottom.

Execution uses a temporary copy (nothing is written back), the notebook folder as working
directory and the non-interactive Agg backend for matplotlib.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
TIME_LIMIT_S = 120  # for a whole notebook, kernel start included

per_notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)


def cell_sources(notebook) -> list[tuple[str, str]]:
    """The (cell type, source) of every cell: what the .py and the .ipynb must agree on."""
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_the_chapters_exist():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}"


@per_notebook
def test_paired_with_a_percent_script_in_sync(path):
    script = path.with_suffix(".py")
    assert script.is_file(), f"{path.name} has no paired {script.name} (jupytext --set-formats ipynb,py:percent)"
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", (
        f"{path.name}: the jupytext metadata must declare formats 'ipynb,py:percent'"
    )
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel must be python3"
    paired = jupytext.read(script)
    assert paired.metadata["jupytext"]["text_representation"]["format_name"] == "percent", script.name
    ours, theirs = cell_sources(notebook), cell_sources(paired)
    first_difference = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                            min(len(ours), len(theirs)))
    assert ours == theirs, (
        f"{path.name} and {script.name} differ ({len(ours)} vs {len(theirs)} cells, first difference at "
        f"cell {first_difference}); edit the .py, then run: jupytext --sync notebooks/{script.name}"
    )


@per_notebook
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; regenerate with jupytext --to ipynb"


@per_notebook
def test_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits the environment
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    notebook = nbformat.read(copy, as_version=4)
    client = NotebookClient(notebook, timeout=TIME_LIMIT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT_S, f"{path.name} ran {elapsed:.0f} s, more than {TIME_LIMIT_S} s"
    stderr = [(i, output.text) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "stream" and output.name == "stderr"]
    assert not stderr, f"{path.name}: cells wrote to stderr (warnings show up in the book): {stderr}"
