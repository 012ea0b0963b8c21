"""mrcnn_np.reference is tooling apart from the library: only ``mrcnn_np.verify`` imports it, and
importing it (or verify) imports no torch; torch is imported when a function needs it."""

from __future__ import annotations

import subprocess
import sys

from tests.unit.test_imports import GRAPH


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_only_verify_imports_the_reference_package():
    importers = sorted(m for m, targets in GRAPH.items() if not _within(m, "mrcnn_np.reference")
                       and any(_within(t, "mrcnn_np.reference") for t in targets))
    assert importers == ["mrcnn_np.verify"]


def test_importing_the_tooling_imports_no_torch():
    code = ("import sys, mrcnn_np.verify, mrcnn_np.reference.twins, mrcnn_np.reference.training, "
            "mrcnn_np.reference.sampling; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
