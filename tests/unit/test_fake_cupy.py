"""The CuPy stand-in refuses what CuPy refuses, allows what CuPy allows, equals NumPy bit for
bit, counts syncs and transfers, and plugs into mrcnn_np.backend."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from mrcnn_np import backend
from mrcnn_np.autograd import Tensor
from tests import fake_cupy

IMPLICIT = "Implicit conversion to a NumPy array is not allowed"


@pytest.fixture
def dev(fake_cupy):
    return fake_cupy.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))


# --- (a) what CuPy refuses -------------------------------------------------------------
@pytest.mark.parametrize("op, message", [
    (lambda d, h: np.asarray(d), IMPLICIT),
    (lambda d, h: np.array(d), IMPLICIT),
    (lambda d, h: np.ascontiguousarray(d, dtype=np.float64), IMPLICIT),
    (lambda d, h: d + h, "Unsupported type <class 'numpy.ndarray'>"),
    (lambda d, h: h + d, "Unsupported type <class 'numpy.ndarray'>"),
    (lambda d, h: d * h[0], "Unsupported type <class 'numpy.ndarray'>"),
    (lambda d, h: d < h, "Unsupported type <class 'numpy.ndarray'>"),
    (lambda d, h: d @ h.T, "Unsupported type <class 'numpy.ndarray'>"),
    (lambda d, h: np.maximum(d, h), "Unsupported type <class 'numpy.ndarray'>"),
    (lambda d, h: np.exp(d, where=d > 1), "Wrong arguments"),
    (lambda d, h: np.add(d, 1.0, where=d > 1), "Wrong arguments"),
    (lambda d, h: np.concatenate([d, h]), "Unsupported type"),
    (lambda d, h: np.where(d > 1, d, h), "Unsupported type"),
    (lambda d, h: np.add.at(h, [0], d[0]), "Unsupported type"),
    (lambda d, h: d + [1.0, 2.0, 3.0, 4.0], "NotImplemented"),  # lists are no ufunc operands
    (lambda d, h: [1.0, 2.0, 3.0, 4.0] - d, "Unsupported type <class 'list'>"),
    (lambda d, h: d + Tensor(h), "NotImplemented"),  # equal __array_priority__: no deferral
    (lambda d, h: np.sum(d, where=d > 1), "where"),
    (lambda d, h: d.dot(h.T), "Unsupported type"),
    (lambda d, h: range(d[0, 1].astype(np.int64)), "cannot be interpreted as an integer"),  # no __index__
    (lambda d, h: d[: d[0, 2].astype(np.int64)], "slice indices"),
])
def test_refuses_what_cupy_refuses(dev, op, message):
    host = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match=message):
        op(dev, host)


def test_refuses_device_random_and_unstable_sorts(fake_cupy, dev):
    with pytest.raises(AttributeError, match="host"):
        fake_cupy.random.default_rng(0)
    with pytest.raises(ValueError, match="stable"):
        fake_cupy.argsort(dev, kind="quicksort")


def test_bool_of_many_elements_raises_like_numpy(dev):
    with pytest.raises(ValueError, match="ambiguous"):
        bool(dev)


# --- (b) what CuPy allows --------------------------------------------------------------
def test_scalars_mix_with_device_arrays(fake_cupy, dev):
    for r in (dev * 2, 2 * dev, dev + np.float32(1.5), np.float64(2) ** dev, dev / True, -dev, abs(dev)):
        assert isinstance(r, fake_cupy.ndarray)
    r = dev.copy()
    r += np.float32(1)
    r *= 2
    np.testing.assert_array_equal(r.get(), (np.arange(12, dtype=np.float32).reshape(3, 4) + 1) * 2)


def test_host_indices_split_points_and_setitem_values(fake_cupy, dev):
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(dev[np.array([2, 0])].get(), host[[2, 0]])
    np.testing.assert_array_equal(dev[[1, 1], 2:].get(), host[[1, 1], 2:])
    np.testing.assert_array_equal(dev[np.array([True, False, True])].get(), host[[0, 2]])
    np.testing.assert_array_equal(dev.take(np.array([0, 5])).get(), host.take([0, 5]))
    parts = np.split(fake_cupy.arange(10), np.array([3, 5]))
    assert [type(p) for p in parts] == [fake_cupy.ndarray] * 3 and [p.shape for p in parts] == [(3,), (2,), (5,)]
    d = fake_cupy.zeros((3, 4), np.float32)
    d[1:] = host[1:]
    d[0, np.array([0, 3])] = np.float32(7)
    expect = host.copy()
    expect[0] = 0
    expect[0, [0, 3]] = 7
    np.testing.assert_array_equal(d.get(), expect)


def test_numpy_functions_dispatch_and_return_device_arrays(fake_cupy, dev):
    for r in (np.sum(dev), np.exp(dev), np.concatenate([dev, dev]), np.stack([dev, dev]), np.maximum(dev, 0),
              np.where(dev > 3, dev, 0.0), np.transpose(dev), np.matmul(dev, dev.T), dev.max(), dev[0, 0]):
        assert isinstance(r, fake_cupy.ndarray)
    assert np.sum(dev).shape == () and dev.sum(axis=0).shape == (4,)
    assert np.shape(dev) == (3, 4) and np.ndim(dev) == 2
    assert backend.get_array_module(np.sum(dev)) is fake_cupy


def test_explicit_transfers(fake_cupy):
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    d = fake_cupy.asarray(host)
    back = d.get()
    assert isinstance(back, np.ndarray) and back is not host
    np.testing.assert_array_equal(back, host)
    np.testing.assert_array_equal(fake_cupy.asnumpy(fake_cupy.array([1, 2])), [1, 2])
    d.set(host * 2)
    np.testing.assert_array_equal(d.get(), host * 2)
    with pytest.raises(TypeError):
        d.set(host.astype(np.float32))
    assert fake_cupy.asarray(d) is d


def test_ufunc_methods_as_cupy_12(fake_cupy):
    idx, vals = np.array([0, 2, 0, 1]), np.array([1.0, 2.0, 3.0, 4.0])
    expect = np.zeros(3)
    np.add.at(expect, idx, vals)
    d = fake_cupy.zeros(3)
    np.add.at(d, fake_cupy.asarray(idx), fake_cupy.asarray(vals))  # numpy dispatches to cupy.add.at
    np.testing.assert_array_equal(d.get(), expect)
    d2 = fake_cupy.zeros(3)
    fake_cupy.add.at(d2, idx, fake_cupy.asarray(vals))  # host indices: copied
    np.testing.assert_array_equal(d2.get(), expect)
    r = fake_cupy.add.reduceat(fake_cupy.asarray(vals), fake_cupy.asarray([0, 2]))
    np.testing.assert_array_equal(r.get(), np.add.reduceat(vals, [0, 2]))


def test_operator_deferral_follows_array_priority(fake_cupy, dev):
    class Higher:
        __array_priority__ = 1000

        def __radd__(self, other):
            return "deferred"

    class OptsOut:
        __array_ufunc__ = None

        def __rmul__(self, other):
            return "opted out"

    assert dev + Higher() == "deferred"
    assert dev * OptsOut() == "opted out"


# --- (c) bit for bit with NumPy --------------------------------------------------------
def sample_ops(xp, a, b, idx):
    """A sample of device-agnostic code, run once per array module."""
    return {
        "matmul": a @ b.T, "dot": a.dot(b.T), "sum": a.sum(), "sum0": xp.sum(a, axis=0), "mean": a.mean(axis=1),
        "max": xp.max(a, axis=1), "argmax": a.argmax(axis=1), "cumsum": xp.cumsum(a, axis=1), "var": a.var(),
        "exp": xp.exp(a), "log": xp.log(xp.abs(a) + 1), "sqrt": xp.sqrt(xp.maximum(a, 0)),
        "argsort": xp.argsort(a[:, 0], kind="stable"), "sort": xp.sort(a, axis=1),
        "where": xp.where(a > 0, a, b * 2), "clip": xp.clip(a, -0.5, 0.5), "minimum": xp.minimum(a, b),
        "gather": a[idx], "mask": a[a[:, 0] > 0], "nonzero": xp.nonzero(a > 0.5)[1],
        "concat": xp.concatenate([a, b], axis=0), "stack": xp.stack([a, b]), "cast": (a * 10).astype(np.int32),
        "floor": xp.floor(a * 3), "scalar": a * np.float32(0.5) + 1, "power": a ** 2,
        "unique": xp.unique(idx), "take": xp.take(a, idx, axis=0), "repeat": xp.repeat(a, 2, axis=0),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_numpy_bit_for_bit(fake_cupy, dtype):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((20, 7)).astype(dtype), rng.standard_normal((20, 7)).astype(dtype)
    idx = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    ref = sample_ops(np, a, b, idx)
    got = sample_ops(fake_cupy, fake_cupy.asarray(a), fake_cupy.asarray(b), fake_cupy.asarray(idx))
    for name, r in ref.items():
        assert isinstance(got[name], fake_cupy.ndarray), name
        g = got[name].get()
        assert g.dtype == np.asarray(r).dtype, name
        np.testing.assert_array_equal(g, r, err_msg=name, strict=False)


# --- (d) counters ----------------------------------------------------------------------
def test_counts_syncs_and_transfers(fake_cupy):
    with fake_cupy.counting() as c:
        d = fake_cupy.asarray(np.arange(6.0))
        e = d * 2 + np.exp(d)
        _ = (e.sum(), e[1:3], len(e), list(iter(e)), e.shape, e.dtype, d[np.array([0, 1])])
    assert (c.syncs, c.to_host, c.to_device) == (0, 0, 2)
    with fake_cupy.counting() as c:
        float(e.sum()), int(d[2]), bool(d[0] > 1), d[1].item(), d.tolist(), e[e > 3], fake_cupy.nonzero(d)
    assert (c.syncs, c.to_host, c.to_device) == (7, 0, 0)
    with fake_cupy.counting() as c:
        d.get(), fake_cupy.asnumpy(e), fake_cupy.cuda.get_current_stream().synchronize()
    assert (c.syncs, c.to_host, c.to_device) == (3, 2, 0)
    fake_cupy.counts.reset()
    assert (fake_cupy.counts.syncs, fake_cupy.counts.to_host, fake_cupy.counts.to_device) == (0, 0, 0)


def test_xp_fixture_gives_both_modules(xp):
    a = xp.asarray(np.arange(4.0))
    assert backend.get_array_module(a) is xp
    np.testing.assert_array_equal(backend.to_numpy(xp.cumsum(a)), [0.0, 1.0, 3.0, 6.0])


# --- (e) the backend sees it as CuPy ---------------------------------------------------
def test_backend_finds_the_stand_in(fake_cupy, dev):
    import cupy

    assert cupy is fake_cupy and backend.cupy_available()
    assert backend.get_array_module(dev) is fake_cupy and backend.get_array_module(Tensor(dev)) is fake_cupy
    assert backend.is_cupy_array(dev) and backend.device_of(dev) == "cuda"
    moved = backend.to_device(np.ones(3, np.float32), "cuda")
    assert isinstance(moved, fake_cupy.ndarray) and moved.dtype == np.float32
    host = backend.to_numpy(dev)
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert isinstance(Tensor(dev).data, fake_cupy.ndarray)


def test_uninstall_restores_what_was_there():
    before, available = sys.modules.get("cupy"), backend.cupy_available()
    with fake_cupy.installed() as cp:
        assert backend.cupy_available() and backend._cupy() is cp
    assert sys.modules.get("cupy") is before
    assert backend.cupy_available() == available
    if importlib.util.find_spec("cupy") is None:  # no CuPy on this machine: none is seen again
        assert not backend.cupy_available()
