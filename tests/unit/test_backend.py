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


class FakeCupyArray:
    """Only what ``is_cupy_array`` looks at: a type defined in a module named ``cupy``."""


FakeCupyArray.__module__ = "cupy._core.core"


def reference(x):
    return "numpy"


def table(**loaders):
    """A KernelTable whose loaders count how often they run."""
    calls = []

    def loader(name):
        return lambda: calls.append(name) or (lambda x: name)

    return backend.KernelTable("op", numpy=reference, **{n: loader(n) for n in loaders}), calls


def test_auto_is_numba_on_host_and_cuda_on_cupy(monkeypatch):
    kernels, calls = table(numba=True, cuda=True)
    assert kernels.names == ("numpy", "numba", "cuda")
    assert kernels.resolve("auto", np.zeros(2)) == "numba"
    assert kernels.resolve("auto", Tensor(np.zeros(2))) == "numba"
    monkeypatch.setattr(backend, "cuda_kernels_usable", lambda: True)  # numba.cuda sees a GPU
    assert kernels.resolve("auto", np.zeros(2), FakeCupyArray()) == "cuda"
    monkeypatch.setattr(backend, "cuda_kernels_usable", lambda: False)  # no GPU, or the simulator
    assert kernels.resolve("auto", np.zeros(2), FakeCupyArray()) == "numpy"  # the reference runs on CuPy too
    assert calls == []  # resolving loads nothing
    assert kernels.select("numpy", np.zeros(2)) is reference
    assert kernels.select("cuda", np.zeros(2))(None) == "cuda"  # numba.cuda copies host arrays to the device
    assert kernels.select("auto", np.zeros(2))(None) == "numba"
    assert calls == ["cuda", "numba"]


def test_auto_falls_back_to_the_numpy_reference_where_an_op_has_no_kernel():
    kernels, _ = table(numba=True)
    assert kernels.resolve("auto", FakeCupyArray()) == "numpy"
    assert table()[0].resolve("auto", np.zeros(2)) == "numpy"


def test_default_impl_makes_auto_the_reference():
    kernels, _ = table(numba=True, cuda=True)
    with backend.default_impl("numpy"):
        assert kernels.resolve("auto", np.zeros(2)) == "numpy"
        assert kernels.resolve("auto", FakeCupyArray()) == "numpy"
        assert kernels.resolve("numba", np.zeros(2)) == "numba"  # an explicit choice still wins
    assert kernels.resolve("auto", np.zeros(2)) == "numba"
    with backend.default_impl("numba"):
        assert kernels.resolve("auto", FakeCupyArray()) in ("cuda", "numpy")  # never numba on device arrays
    with pytest.raises(ValueError, match="default_impl: impl must be one of"):
        with backend.default_impl("fortran"):
            pass


def test_bad_choices_name_the_op_and_its_implementations():
    kernels, calls = table(numba=True)
    with pytest.raises(ValueError, match=r"op: impl must be one of \('auto', 'numpy', 'numba', 'cuda'\)"):
        kernels.resolve("fortran")
    with pytest.raises(ValueError, match=r"op has no impl='cuda'; it has \('numpy', 'numba'\)"):
        kernels.select("cuda", np.zeros(2))
    with pytest.raises(ValueError, match="op: impl='numba' runs on host arrays; got CuPy arrays"):
        kernels.select("numba", FakeCupyArray())
    assert calls == []


def test_numba_missing_is_a_runtime_error(monkeypatch):
    kernels, _ = table(numba=True, cuda=True)
    monkeypatch.setattr(backend, "numba_available", lambda: False)
    assert kernels.resolve("auto", np.zeros(2)) == kernels.resolve("auto", FakeCupyArray()) == "numpy"
    for impl in ("numba", "cuda"):
        with pytest.raises(RuntimeError, match=f"op: impl='{impl}' needs numba installed"):
            kernels.resolve(impl, np.zeros(2))


def test_every_op_with_kernels_has_a_table_of_all_three():
    from mrcnn_np.ops.boxes import BOX_IOU
    from mrcnn_np.ops.nms import NMS
    from mrcnn_np.ops.roi_align import ROI_ALIGN

    for kernels in (BOX_IOU, NMS, ROI_ALIGN):
        assert kernels.names == ("numpy", "numba", "cuda"), kernels.op


def test_bad_device_is_named():
    with pytest.raises(ValueError, match="unknown device"):
        backend.to_device(np.zeros(1), "tpu")


@pytest.mark.skipif(backend.cupy_available(), reason="this machine has a GPU")
def test_cuda_without_cupy_says_how_to_get_it():
    with pytest.raises(RuntimeError, match=r"mrcnn-np\[gpu\]"):
        backend.to_device(np.zeros(1), "cuda")


def test_importing_the_package_and_its_ops_imports_neither_cupy_nor_numba():
    import subprocess
    import sys

    code = ("import sys, mrcnn_np, mrcnn_np.nn, mrcnn_np.ops, mrcnn_np.ops.roi_align, mrcnn_np.ops.roi_pool; "
            "print('cupy' in sys.modules, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_default_impl_for_some_ops_only():
    """``default_impl(impl, ops=...)`` moves only the named ops; the innermost block decides."""
    conv, norm = backend.KernelTable("conv2d", numpy=1, numba=lambda: 2), backend.KernelTable("batch_norm", numpy=1, numba=lambda: 2)
    x = np.zeros(2)
    with backend.default_impl("numpy", ops=("batch_norm",)):
        assert norm.resolve("auto", x) == "numpy" and conv.resolve("auto", x) == "numba"
        with backend.default_impl("numpy"):
            assert norm.resolve("auto", x) == conv.resolve("auto", x) == "numpy"
        assert conv.resolve("auto", x) == "numba"
    assert norm.resolve("auto", x) == "numba"
    for bad in ("batch_norm", 3, [1]):
        with pytest.raises(TypeError, match="ops must be None or a sequence of op names"):
            with backend.default_impl("numpy", ops=bad):
                pass
