"""The array backend works, and degrades gracefully, without CuPy or a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np import backend
from mrcnn_np.autograd import Tensor


def test_numpy_arrays_and_tensors_use_numpy():
    a = np.zeros(3)
    assert backend.get_array_module(a) is np
    assert backend.get_array_module(Tensor(a), 1.0) is np
    assert backend.device_of(a) == "cpu"
    assert backend.to_device(a, "cpu") is a


def test_auto_impl_on_host_is_numba():
    assert backend.resolve_impl("auto", np.zeros(2)) == "numba"
    assert backend.resolve_impl("numpy", np.zeros(2)) == "numpy"
    assert backend.resolve_impl("cuda", np.zeros(2)) == "cuda"  # numba.cuda copies to the device


def test_bad_impl_and_device_are_named():
    with pytest.raises(ValueError, match="impl must be one of"):
        backend.resolve_impl("fortran")
    with pytest.raises(ValueError, match="unknown device"):
        backend.to_device(np.zeros(1), "tpu")


@pytest.mark.skipif(backend.cupy_available(), reason="this machine has a GPU")
def test_cuda_without_cupy_says_how_to_get_it():
    with pytest.raises(RuntimeError, match=r"mrcnn-np\[gpu\]"):
        backend.to_device(np.zeros(1), "cuda")


def test_importing_the_package_does_not_import_cupy():
    import subprocess
    import sys

    code = "import sys, mrcnn_np, mrcnn_np.nn; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
