"""Fixtures shared by every test folder.

``fake_cupy``: the strict CuPy stand-in of :mod:`tests.fake_cupy`, installed as ``cupy`` for
one test (so ``mrcnn_np.backend`` finds it), its counters at zero; uninstalled afterwards.

``fake_gpu``: the stand-in installed, and the ops' numba.cuda kernels replaced by stand-in kernels
(:mod:`tests.fake_kernels`) so that ``impl="auto"`` on device arrays takes the GPU path.

``xp``: the array module a device-agnostic test runs with -- once with ``numpy``, once with
the installed stand-in. Build inputs on the host and move them with ``xp.asarray``; compare
results on the host (``backend.to_numpy``) with the NumPy run, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import fake_cupy as _fake_cupy


@pytest.fixture
def fake_cupy():
    """The CuPy stand-in module, installed as ``cupy`` for this test."""
    with _fake_cupy.installed() as cupy:
        yield cupy


@pytest.fixture
def fake_gpu(fake_cupy):
    """The CuPy stand-in with stand-in CUDA kernels: the model's GPU path, kernels included."""
    from tests import fake_kernels

    with fake_kernels.installed():
        yield fake_cupy


@pytest.fixture(params=["numpy", "fake_cupy"])
def xp(request):
    """``numpy``, then the installed CuPy stand-in."""
    return np if request.param == "numpy" else request.getfixturevalue("fake_cupy")
