"""Where and with what a result was made, recorded next to the numbers it produced.

    provenance()   # {"date", "python", "platform", "cpus", "load_average", "numpy", "numba",
                   #  "mrcnn-np", "commit", "uncommitted_changes"}

``commit`` is the git commit of the checkout the package runs from (None outside a git checkout,
e.g. an installed wheel); ``uncommitted_changes`` says whether tracked files differed from it.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout, when the package runs from one


def provenance() -> dict:
    """Date (UTC), versions, CPUs, the 1/5/15-minute load average, the commit and whether the
    tree had uncommitted changes."""
    out = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
           "load_average": [round(x, 2) for x in os.getloadavg()]}
    for pkg in ("numpy", "numba", "mrcnn-np"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True)
        out["commit"] = head.stdout.strip() if head.returncode == 0 and head.stdout.strip() else None
        out["uncommitted_changes"] = bool(status.stdout.strip()) if out["commit"] else None
    except OSError:
        out["commit"] = out["uncommitted_changes"] = None
    return out
