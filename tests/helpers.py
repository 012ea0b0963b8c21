"""Comparison helpers shared by the tests.

Relative error is measured against the reference's scale: ``max|ours - ref| / max|ref|``
(``max|ours - ref|`` when the reference is all zeros), so one number summarises an array.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from mrcnn_np.autograd import Tensor

# tolerances of the acceptance criteria, by dtype
RTOL = {np.float64: 1e-10, np.float32: 1e-5}


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != reference {ref.shape}"
    if ours.size == 0:
        return 0.0
    scale = np.abs(ref).max()
    diff = np.abs(ours - ref).max()
    return float(diff / scale) if scale > 0 else float(diff)


def assert_rel(ours, ref, rtol, what=""):
    err = rel_err(ours, ref)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.0e}"


def numerical_grad(f, arrays, index, eps=1e-6):
    """Central differences of the scalar ``f(*arrays)`` w.r.t. ``arrays[index]`` (float64)."""
    x = arrays[index]
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f(*arrays)
        flat[i] = old - eps
        minus = f(*arrays)
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def check_gradients(fn, arrays, wrt, rtol=1e-6, seed=0):
    """Compare the tape's gradient of ``sum(fn(*inputs) * w)`` (random ``w``) with central
    differences, for every input position in ``wrt``. Inputs are float64 arrays."""
    rng = np.random.default_rng(seed)
    arrays = [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a for a in arrays]
    out = fn(*arrays)
    weights = rng.standard_normal(np.shape(out.data))

    def scalar(*arrs):
        return float((fn(*arrs).data * weights).sum())

    tensors = [Tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    fn(*tensors).backward(weights)
    for i in wrt:
        numeric = numerical_grad(scalar, arrays, i)
        assert_rel(tensors[i].grad, numeric, rtol, f"input {i} vs central differences")


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    """The script ``benchmarks/NAME.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_json(value):
    """``value`` as a JSON file holds it (tuples as lists)."""
    return json.loads(json.dumps(value))
