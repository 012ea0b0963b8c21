"""Every numba.cuda kernel compiles to PTX for sm_90 (H100/H200), in float32 and float64,
and the float32 kernels do no float64 arithmetic beyond what their module documents.

No GPU is needed: ``numba.cuda.compile_ptx`` only needs NVVM (libnvvm, from a CUDA toolkit:
``/usr/local/cuda`` or ``$CUDA_HOME``, or the ``nvidia-nvvm`` wheel). Without it these tests
fail, saying so; they never skip. They run in the main pytest process (not under the
simulator, whose ``cuda.jit`` compiles nothing).

Each kernel module lists its kernels in ``CUDA_KERNELS`` (name -> argument types for a float
type) and, where a float32 kernel needs float64 on purpose, the PTX opcodes in
``FLOAT64_IN_FLOAT32``; a ``@cuda.jit`` function missing from the table fails the test.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import mrcnn_np.kernels

MODULES = [importlib.import_module(f"mrcnn_np.kernels.{m.name}") for m in pkgutil.iter_modules(mrcnn_np.kernels.__path__)]
TABLED = [(module, name) for module in MODULES for name in getattr(module, "CUDA_KERNELS", {})]
SM_90 = (9, 0)


def _numba_types():
    from numba import float32, float64

    return {"float32": float32, "float64": float64}


@pytest.fixture(scope="module")
def nvvm():
    """Fails (never skips) with the way to get NVVM when it cannot be loaded."""
    from numba.core import config

    assert not config.ENABLE_CUDASIM, "test_ptx compiles real PTX: run it without NUMBA_ENABLE_CUDASIM=1"
    from numba.cuda.cudadrv import nvvm

    try:
        return nvvm.NVVM().get_version()
    except Exception as err:  # NvvmSupportError, or an OSError from the loader
        pytest.fail(f"NVVM (libnvvm) cannot be loaded, so no PTX can be compiled: {err}. Install a CUDA toolkit "
                    "(it is looked for in $CUDA_HOME and /usr/local/cuda) or the `nvidia-nvvm` wheel "
                    "(`pip install 'cuda-toolkit[nvvm]'`, or numba-cuda's `cu13` extra).")


def cuda_kernels(module) -> dict:
    """The ``@cuda.jit`` functions defined in ``module``, by name."""
    from numba.cuda.dispatcher import CUDADispatcher

    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, CUDADispatcher) and obj.py_func.__module__ == module.__name__}


def float64_opcodes(ptx: str) -> list[str]:
    """The opcodes of the PTX instructions that operate on float64 (``add.f64``, ``cvt.f64.f32``,
    ``ld.global.f64``, ``setp.f64`` ...), one entry per instruction; declarations and comments
    ignored."""
    found = []
    for line in ptx.splitlines():
        line = line.split("//")[0].strip()
        if not line or line[0] in ".{}" or line.endswith(":"):
            continue
        opcode = re.sub(r"^@!?%\w+\s+", "", line).split()[0].rstrip(";")
        if ".f64" in opcode:  # a comparison is "setp.f64", whichever test (gt, leu ...) the compiler chose
            found.append(re.sub(r"^setp\.\w+\.f64$", "setp.f64", opcode))
    return found


def compile_ptx(module, name, dtype):
    from numba import cuda

    kernel = cuda_kernels(module)[name]
    sig = module.CUDA_KERNELS[name](_numba_types()[dtype])
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, device=kernel.targetoptions.get("device", False), cc=SM_90)
    return ptx


def test_kernel_modules_are_found():
    assert TABLED, "no CUDA_KERNELS table in mrcnn_np.kernels: the discovery is broken"
    assert {m.__name__.rsplit(".", 1)[1] for m in MODULES} >= {"box_iou", "device", "nms", "roi_align"}


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_every_cuda_kernel_is_listed(module):
    """A new ``@cuda.jit`` function cannot be missed: it must be in its module's table."""
    found, listed = set(cuda_kernels(module)), set(getattr(module, "CUDA_KERNELS", {}))
    assert found == listed, (f"{module.__name__}: @cuda.jit functions {sorted(found)}, CUDA_KERNELS lists "
                             f"{sorted(listed)}; list each with its argument types")
    documented = set(getattr(module, "FLOAT64_IN_FLOAT32", {}))
    assert documented <= listed, f"{module.__name__}: FLOAT64_IN_FLOAT32 names unknown kernels {documented - listed}"


@pytest.mark.parametrize("module,name", TABLED, ids=[f"{m.__name__.rsplit('.', 1)[1]}.{n}" for m, n in TABLED])
def test_float32_kernel_stays_float32(nvvm, module, name):
    """The float32 PTX has exactly the float64 instructions the module documents (most: none)."""
    ptx = compile_ptx(module, name, "float32")
    assert ".target sm_90" in ptx
    allowed = getattr(module, "FLOAT64_IN_FLOAT32", {}).get(name, {})
    found = float64_opcodes(ptx)
    undocumented = sorted(set(found) - set(allowed))
    assert not undocumented, f"{module.__name__}.{name} (float32) does float64 arithmetic: {undocumented}"
    assert set(found) == set(allowed), (f"{module.__name__}.{name}: FLOAT64_IN_FLOAT32 documents "
                                        f"{sorted(set(allowed) - set(found))}, which the PTX no longer has")


@pytest.mark.parametrize("module,name", TABLED, ids=[f"{m.__name__.rsplit('.', 1)[1]}.{n}" for m, n in TABLED])
def test_float64_kernel_compiles(nvvm, module, name):
    """The float64 kernel compiles for sm_90; its atomic adds are the native float64 ones."""
    ptx = compile_ptx(module, name, "float64")
    assert ".target sm_90" in ptx
    atomics = re.findall(r"\b(?:atom|red)\.global\.add\.(\w+)", ptx)
    assert all(t == "f64" for t in atomics), f"{module.__name__}.{name}: atomic adds of types {atomics}"


EXACT = [(m, n) for m, n in TABLED if n in getattr(m, "EXACT", ())]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("module,name", EXACT, ids=[f"{m.__name__.rsplit('.', 1)[1]}.{n}" for m, n in EXACT])
def test_exact_kernel_has_no_fma(nvvm, module, name, dtype):
    """Kernels that must equal the NumPy reference bit for bit (a module's ``EXACT``) round
    every product: no FMA contraction, which would change the last bit of the result."""
    fused = re.findall(r"\bfma\.\w+\.f(?:32|64)", compile_ptx(module, name, dtype))
    assert not fused, f"{module.__name__}.{name} ({dtype}): {fused}; write products with device.mul_rn"


def test_some_kernels_are_exact():
    assert {n for _, n in EXACT} >= {"_box_iou_gpu", "_overlap_mask"}
