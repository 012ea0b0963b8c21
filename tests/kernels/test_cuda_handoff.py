"""The CuPy path of the numba.cuda kernels (:mod:`mrcnn_np.kernels.device`): inputs shared
zero copy, outputs allocated by CuPy and returned as themselves, launches on CuPy's current
stream, ``as_cuda_array(..., sync=False)``, no host copy or sync except NMS's one mask read.

Under the simulator (no GPU, no CuPy, no ``as_cuda_array``) the CuPy path runs on the strict
CuPy stand-in of tests/fake_cupy.py (which counts syncs and transfers and refuses implicit
host conversion), with ``cuda.as_cuda_array`` / ``cuda.external_stream`` replaced by
recorders that share the stand-in's memory with the simulated kernel. That checks the
hand-off's logic and the kernels' results on that path; the real hand-off (pointers,
streams) runs only on a GPU, where this same file uses real CuPy (run the ``cudasim`` tests
there without NUMBA_ENABLE_CUDASIM). With neither, the tests fail: they never skip.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import config, cuda

import mrcnn_np.backend as backend
from mrcnn_np.kernels import box_iou as box_iou_kernels
from mrcnn_np.kernels import nms as nms_kernels
from mrcnn_np.kernels import roi_align as roi_align_kernels
from mrcnn_np.ops.boxes import box_iou_numpy
from mrcnn_np.ops.nms import nms_numpy
from mrcnn_np.ops.roi_align import (
    AxisTaps,
    SamplingPlan,
    roi_align_backward_numpy,
    roi_align_numpy,
    sampling_plan,
)
from tests.kernels.strategies import box_set

pytestmark = pytest.mark.cudasim

STREAM_PTR = 0x5EED  # the stand-in's "current stream"


class Handoff:
    """Everything the tests observe about the CuPy-path kernel calls (stand-in or real CuPy):
    the arrays CuPy allocated, the host reads, the streams, and every launch's arguments."""

    def __init__(self, monkeypatch, cp):
        self.cp, self.simulated = cp, bool(config.ENABLE_CUDASIM)
        self.allocated, self.sync_flags, self.stream_ptrs, self.streams, self.launch_args = [], [], [], [], []
        self.host_reads = 0
        if self.simulated:
            from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

            current = type("Stream", (), {"ptr": STREAM_PTR})()
            monkeypatch.setattr(cp.cuda, "get_current_stream", lambda device=None: current)
            self.expected_ptr = STREAM_PTR

            def as_cuda_array(x, sync=True):
                assert isinstance(x, cp.ndarray) and x._a.flags.c_contiguous
                return FakeCUDAArray(x._a)  # the stand-in's own memory: zero copy

            self._spy(monkeypatch, "as_cuda_array", as_cuda_array)
            self._spy(monkeypatch, "external_stream", lambda ptr: ("external stream", ptr))
        else:
            self._stream = cp.cuda.Stream(non_blocking=True)
            self.expected_ptr = self._stream.ptr
            self._spy(monkeypatch, "as_cuda_array", cuda.as_cuda_array)
            self._spy(monkeypatch, "external_stream", cuda.external_stream)
        for name in ("empty", "zeros"):
            monkeypatch.setattr(cp, name, self._recording(getattr(cp, name), garbage=name == "empty"))
        asnumpy = cp.asnumpy

        def host_read(a, *args, **kwargs):
            self.host_reads += 1
            return asnumpy(a, *args, **kwargs)

        monkeypatch.setattr(cp, "asnumpy", host_read)
        for name in ("to_device", "device_array"):  # the host path's copies: never on this path
            monkeypatch.setattr(cuda, name, self._forbidden(name))
        kernel_type = type(box_iou_kernels._box_iou_gpu)  # numba's dispatcher, or the simulator's kernel
        configure = kernel_type.__getitem__

        def getitem(kernel, configuration):  # kernel[blocks, threads, stream](*args), recorded
            launch = configure(kernel, configuration)
            stream = configuration[2] if len(configuration) > 2 else None

            def record_and_launch(*args):
                self.launch_args.append((stream, args))
                return launch(*args)

            return record_and_launch

        monkeypatch.setattr(kernel_type, "__getitem__", getitem)

    def _spy(self, monkeypatch, name, impl):
        def spy(*args, **kwargs):
            if name == "as_cuda_array":
                self.sync_flags.append(kwargs.get("sync", args[1] if len(args) > 1 else True))
            else:
                self.stream_ptrs.append(args[0])
            out = impl(*args, **kwargs)
            if name == "external_stream":
                self.streams.append(out)
            return out

        monkeypatch.setattr(cuda, name, spy, raising=False)

    @staticmethod
    def _forbidden(name):
        def refuse(*args, **kwargs):
            raise AssertionError(f"cuda.{name} called on the CuPy path")

        return refuse

    def _recording(self, alloc, garbage):
        def recorded(*args, **kwargs):
            out = alloc(*args, **kwargs)
            if garbage and self.simulated:  # so that an element the kernel should write but doesn't shows
                out._a.fill(np.nan if out.dtype.kind == "f" else np.iinfo(out.dtype).max)
            self.allocated.append(out)
            return out

        return recorded

    def run(self, fn, *args, syncs=0, to_device=0):
        """Call ``fn`` on CuPy's current stream (a fresh non-default one on a GPU); on the
        stand-in, it may sync (read the device) and copy host data to it only so often."""
        if self.simulated:
            with self.cp.counting() as counted:
                out = fn(*args)
            assert (counted.syncs, counted.to_device) == (syncs, to_device), counted
            return out
        with self._stream:
            out = fn(*args)
        self._stream.synchronize()
        return out

    def check_launches(self, kernels: int):
        """``kernels`` launches, each on CuPy's current stream with device arrays only (no
        array the launch would copy), every one imported with sync=False."""
        assert len(self.launch_args) == kernels
        assert self.streams and self.stream_ptrs == [self.expected_ptr] * len(self.streams)
        for stream, args in self.launch_args:
            assert any(stream is s for s in self.streams), "launched on another stream than CuPy's current one"
            assert not any(isinstance(a, np.ndarray) and a.ndim for a in args), "a host array at launch"
            assert not any(backend.is_cupy_array(a) for a in args), "a CuPy array left to numba's default import"
        assert self.sync_flags and not any(self.sync_flags), "as_cuda_array without sync=False"


@pytest.fixture
def handoff(monkeypatch, request):
    if config.ENABLE_CUDASIM:
        return Handoff(monkeypatch, request.getfixturevalue("fake_cupy"))
    if backend.cupy_available():
        import cupy

        return Handoff(monkeypatch, cupy)
    pytest.fail("the CuPy path needs the simulator (NUMBA_ENABLE_CUDASIM=1) or CuPy with a GPU")


def test_box_iou_returns_its_cupy_output(handoff):
    cp = handoff.cp
    b1, _ = box_set(0, 37, np.float32)
    b2, _ = box_set(1, 45, np.float32)
    out = handoff.run(box_iou_kernels.box_iou_cuda, cp.asarray(b1), cp.asarray(b2))
    assert out is handoff.allocated[-1], "the result is not the array allocated for the kernel"
    np.testing.assert_array_equal(out.get(), box_iou_numpy(b1, b2))
    handoff.check_launches(1)
    assert handoff.host_reads == 0


@pytest.mark.parametrize("n", [1, 64, 150])
def test_nms_reads_only_its_mask_back(handoff, n):
    cp = handoff.cp
    boxes, scores = box_set(n, n, np.float32)
    keep = handoff.run(nms_kernels.nms_cuda, cp.asarray(boxes), cp.asarray(scores), 0.5, syncs=1, to_device=1)
    assert backend.is_cupy_array(keep)
    np.testing.assert_array_equal(keep.get(), nms_numpy(boxes, scores, 0.5))
    handoff.check_launches(1)
    assert handoff.host_reads == 1  # the mask, for the sequential walk; the kept indices go back


def _plan_like(plan, convert):
    taps = [AxisTaps(*map(convert, t)) for t in (plan.y, plan.x)]
    return SamplingPlan(convert(plan.batch), *taps, convert(plan.count))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_align_forward_and_backward_on_cupy_arrays(handoff, dtype):
    cp = handoff.cp
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 11)).astype(dtype)
    xy = rng.uniform(-5, 30, (5, 2))
    rois = np.concatenate([rng.integers(0, 2, (5, 1)), xy, xy + rng.uniform(0, 25, (5, 2))], axis=1).astype(dtype)
    plan = sampling_plan(rois, 0.5, (3, 2), 2, False, 9, 11, dtype)
    g = rng.standard_normal((5, 3, 3, 2)).astype(dtype)
    device_plan = _plan_like(plan, cp.asarray)

    out = handoff.run(roi_align_kernels.roi_align_cuda, cp.asarray(x), device_plan, (3, 2))
    assert out is handoff.allocated[-1] and out.shape == (5, 3, 3, 2) and out.flags.c_contiguous
    grad = handoff.run(roi_align_kernels.roi_align_backward_cuda, cp.asarray(g), device_plan, x.shape)
    assert grad is handoff.allocated[-1] and grad.shape == x.shape and grad.flags.c_contiguous

    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out.get(), roi_align_numpy(x, plan, (3, 2)), rtol=tol, atol=tol)
    np.testing.assert_allclose(grad.get(), roi_align_backward_numpy(g, plan, x.shape), rtol=tol, atol=tol)
    handoff.check_launches(2)
    assert handoff.host_reads == 0
