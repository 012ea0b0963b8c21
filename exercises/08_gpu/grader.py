"""Grader of exercise 08: the learner's numba.cuda kernels against mrcnn_np's NumPy references.

Where the kernels run is chosen by :func:`prepare`, which ``mrcnn_np.exercises.grade`` (and so
``mrcnn-np check 08``) calls before the learner's file is imported: on a GPU when numba.cuda
finds one, else in numba.cuda's simulator (README.md, "Where your kernels run"). numba reads
``NUMBA_ENABLE_CUDASIM`` once, when it is imported, so in a process that imported numba
earlier without the simulator and has no GPU, every task fails with a message saying so.

box_iou is compared with ``mrcnn_np.ops.box_iou(impl="numpy")`` exactly, in float64 and
float32 (on a GPU to 1e-13 / 1e-6: its compiler fuses multiplies and adds into FMAs);
element_index with ``np.unravel_index``, exactly; roi_align with
``mrcnn_np.ops.roi_align.roi_align_numpy`` on the plan of ``sampling_plan``, to 1e-12
(float64) / 1e-5 (float32) of the largest expected value. While a launcher runs, the grader
stands in for its kernel in the learner's module (:class:`_Launches`): it records every
launch, so it can tell a launcher that never launched, one that launched a grid of 0 blocks,
and a grid too small for the output. When a result is wrong in a way the grader recognises
(``mistakes.py``, or the launch it recorded), the message ends with a hint.
"""

import contextlib
import math
import os
import subprocess
import sys

import numpy as np

from mrcnn_np.exercises import Mistakes, Task, assert_close, call_learner, for_each_case, function, hinted, shape_str
from mrcnn_np.exercises import as_array as _as_array
from mrcnn_np.exercises import wrong_on as _wrong_on

STUB = "exercise.py"
MISTAKES = Mistakes(__file__)
SIMULATOR = "NUMBA_ENABLE_CUDASIM"
ROI_RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
GPU_IOU_RTOL = {np.dtype(np.float64): 1e-13, np.dtype(np.float32): 1e-6}  # FMAs move the last bits on a GPU


# --- where the kernels run ---------------------------------------------------------------------
def _fresh_numba_sees_a_gpu() -> bool:
    """Whether numba.cuda finds a GPU, asked in a fresh Python (importing numba here would fix the choice)."""
    env = {k: v for k, v in os.environ.items() if k != SIMULATOR}
    try:
        done = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
                              env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == ["True"]


def prepare():
    """Choose where numba.cuda runs, before the learner's file imports numba: the GPU when numba
    finds one, else the simulator (``NUMBA_ENABLE_CUDASIM=1``). A choice made already is left
    alone: ``NUMBA_ENABLE_CUDASIM`` set by the learner, or numba imported by someone else."""
    if SIMULATOR in os.environ or "numba" in sys.modules:
        return
    if not _fresh_numba_sees_a_gpu():
        os.environ[SIMULATOR] = "1"


NO_TARGET = (
    "numba.cuda has no GPU here, and its simulator is off: numba was imported in this process without\n"
    "NUMBA_ENABLE_CUDASIM=1, and it reads that variable only when it is imported. Grade in a fresh process\n"
    "(`mrcnn-np check 08` in a terminal switches the simulator on by itself), or set NUMBA_ENABLE_CUDASIM=1\n"
    "before anything imports numba (in Jupyter: restart the kernel, run `%env NUMBA_ENABLE_CUDASIM=1` first)")


def _target() -> tuple[str, bool]:
    """(note for the report, whether it is the simulator); AssertionError when numba.cuda can run nowhere."""
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        return "in numba.cuda's simulator", True
    try:
        if cuda.is_available():
            name = cuda.get_current_device().name
            return f"on the GPU, {name.decode() if isinstance(name, bytes) else name}", False
    except Exception:  # a broken driver reads as no GPU
        pass
    if os.environ.get(SIMULATOR, "1") != "1":
        raise AssertionError(f"{SIMULATOR}={os.environ[SIMULATOR]} asks for a GPU, and numba.cuda finds none: "
                             f"unset it (the grader then uses the simulator) or set it to 1")
    raise AssertionError(NO_TARGET)


# --- the launches of the learner's kernel --------------------------------------------------------
def _dims(d):
    """A launch dimension as a 3-tuple (x, y, z), as CUDA pads it; as given when it is not ints."""
    d = tuple(d) if isinstance(d, (tuple, list)) else (d,)
    return d + (1,) * (3 - len(d)) if all(isinstance(v, (int, np.integer)) for v in d) else d


class _Launches:
    """Stands in for the learner's kernel in their module while a launcher runs: ``kernel[grid,
    block](...)`` records ``(grid, block)`` (3-tuples) and launches the kernel -- except a grid
    with 0 blocks, which a GPU refuses, and which the grader reports once the result is checked.
    ``kernel.forall(n)`` is recorded as ``(None, None)``: a launch of a size numba chooses."""

    def __init__(self, kernel):
        self.kernel, self.configs = kernel, []

    def __getitem__(self, config):
        items = config if isinstance(config, tuple) else (config,)
        grid, block = (_dims(items[0]), _dims(items[1])) if len(items) >= 2 else (None, None)
        self.configs.append((grid, block))
        if grid is not None and 0 in grid:
            return lambda *args: None
        return self.kernel[config]

    def forall(self, *args, **kwargs):
        self.configs.append((None, None))
        return self.kernel.forall(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.kernel, name)


@contextlib.contextmanager
def _recording(ex, name):
    """The learner's kernel ``name`` replaced by a :class:`_Launches` while the block runs; yields its list."""
    kernel = getattr(ex, name, None)
    if kernel is None:
        raise AssertionError(f"your file defines no kernel {name!r}; keep the stub's names")
    spy = _Launches(kernel)
    setattr(ex, name, spy)
    try:
        yield spy.configs
    finally:
        setattr(ex, name, kernel)


def _crash_hint(kernel, guard):
    """A hint for an error the learner's launcher raised: a thread out of bounds, a float grid, no kernel."""
    def hint(exc):
        text = str(exc)
        if isinstance(exc, IndexError) and "out of bounds" in text:
            return ("a thread past the end of the output read or wrote outside an array: the grid is rounded up to "
                    f"whole blocks, so the last block has threads without an element -- let them do nothing "
                    f"({guard}). A GPU does not check: there they read and write garbage")
        if isinstance(exc, TypeError) and ("griddim" in text or "blockdim" in text):
            return ("grid and block sizes are whole numbers: size / threads is a float; blocks = math.ceil(size / "
                    "threads)")
        if isinstance(exc, TypeError) and "subscriptable" in text:
            return (f"{kernel} must be a CUDA kernel, decorated with @cuda.jit, and launched as "
                    f"{kernel}[blocks, threads](...)")
        return None
    return hint


def _launched(kernel, launches, what, empty):
    """The checks of the recorded launches that need no numbers: a launch happened, unless there is nothing to do."""
    if not empty and not launches:
        raise AssertionError(f"{what}:\nyour launcher returned without launching {kernel}: the work is the GPU's, "
                             f"done by your kernel ({kernel}[blocks, threads](...))")


def _zero_grids(launches, kernel, what, two_d):
    """Fail on a launch of 0 blocks, which a GPU refuses (checked once the result is right, as it is for no boxes)."""
    zero = [grid for grid, _ in launches if grid is not None and 0 in grid]
    if zero:
        raise AssertionError(f"{what}:\nyour launcher launched {kernel} with a grid of {zero[0][:1 + two_d]} blocks: "
                             "a GPU refuses a grid of 0 blocks (CUDA_ERROR_INVALID_VALUE; the simulator runs nothing)\n"
                             "hint: when there is nothing to compute (no boxes), return the empty result without "
                             "launching")


def _host_result(got, expected, what, dtype):
    """``got`` as a host array of ``expected``'s shape and ``dtype``, or a readable AssertionError."""
    if hasattr(got, "copy_to_host"):
        raise AssertionError(f"{what}:\nyour launcher returned a device array: return a host (NumPy) array, "
                             f"out.copy_to_host()")
    got = _as_array(got, expected.shape, what)
    if got.shape != expected.shape:
        raise AssertionError(f"{what}:\nexpected shape {shape_str(expected.shape)}, got {shape_str(got.shape)}")
    if got.dtype != dtype:
        raise AssertionError(f"{what}:\nexpected {dtype} (the inputs' dtype), got {got.dtype}\nhint: allocate the "
                             f"output in the inputs' dtype: the GPU computes in the dtype of the arrays it is given")
    return got


def _wrong(got, expected, rtol):
    """(bool array) the elements of ``got`` farther from ``expected`` than ``rtol`` of its largest value."""
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    with np.errstate(invalid="ignore"):
        return ~(np.abs(got.astype(np.float64) - expected) <= (rtol * scale if scale > 0 else rtol))


def _coverage_hint(got, expected, launches, rtol, two_d):
    """When every wrong element lies outside what the recorded grid reaches: which, and why."""
    if not launches or launches[-1][0] is None or not all(isinstance(v, (int, np.integer))
                                                         for v in launches[-1][0] + launches[-1][1]):
        return None
    (gx, gy, _), (bx, by, _) = launches[-1]
    wrong = _wrong(got, expected, rtol)
    launch = f"your launch, a grid of {(gx, gy)[:1 + two_d]} blocks of {(bx, by)[:1 + two_d]} threads"
    if not two_d:
        reached = gx * bx * gy * by
        if reached < wrong.size and not wrong.reshape(-1)[:reached].any():
            return (f"only the first {reached} of the {wrong.size} elements have a thread ({launch}): {CEIL_HINT}")
        return None
    n, m = wrong.shape
    for rows, cols, how in ((gy * by, gx * bx, "x the column j"), (gx * bx, gy * by, "x the row i")):
        if (rows < n or cols < m) and not wrong[:rows, :cols].any():
            missing = " and ".join(part for part, short in ((f"rows i >= {rows}", rows < n),
                                                           (f"columns j >= {cols}", cols < m)) if short)
            if how == "x the column j":
                return f"no thread computed the {missing} ({launch}, spans {cols} columns and {rows} rows): {CEIL_HINT}"
            return (f"no thread computed the {missing}: your kernel takes the row i from x, and {launch} spans "
                    f"{gx * bx} threads along x (sized for the {m} columns?): x, the first index of cuda.grid(2), "
                    f"is the fastest; make it the column j (j, i = cuda.grid(2)) and size it by m")
    return None


CEIL_HINT = ("every element needs a thread: blocks = math.ceil(size / threads) along each axis, and a thread past the "
             "end does nothing")


def _last_bits_hint(got, expected, dtype):
    error = float(np.nanmax(np.abs(got.astype(np.float64) - expected))) if expected.size else 0.0
    if 0 < error <= 8 * np.finfo(dtype).eps * max(float(np.abs(expected).max()), 1.0):
        return ("only the last bits differ: the grader compares exactly, which the same operations in the same order "
                "give; inter = w * h with w, h clamped at 0, union = area_i + area_j - inter (left to right), all in "
                "the boxes' dtype")
    return None


# --- task (a) ----------------------------------------------------------------------------------
def _random_boxes(rng, n):
    xy = rng.uniform(0, 40, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, 25, (n, 2))], axis=1)  # (n, 4) x1, y1, x2, y2


def _box_cases():
    """(label, boxes1, boxes2): sizes that are not multiples of a block, both dtypes, edges, no boxes."""
    rng = np.random.default_rng(80)
    yield "random boxes, float64", _random_boxes(rng, 19), _random_boxes(rng, 13)
    yield "random boxes, float32", _random_boxes(rng, 13).astype(np.float32), _random_boxes(rng, 19).astype(np.float32)
    edges1 = np.array([[0, 0, 10, 10], [2, 2, 4, 4], [10, 0, 20, 10], [5, 5, 5, 5], [3, 3, 3, 3]], dtype=np.float64)
    edges2 = np.array([[0, 0, 10, 10], [10, 10, 20, 20], [30, 30, 40, 45], [5, 5, 5, 5], [0, 0, 10, 0],
                       [1, 1, 3, 3], [-5, -5, 15, 15]], dtype=np.float64)
    yield "identical, nested, touching, apart, of zero area (two points: IoU 0)", edges1, edges2
    yield "no boxes in boxes1", np.zeros((0, 4)), _random_boxes(rng, 5)
    yield "no boxes in boxes2", _random_boxes(rng, 3).astype(np.float32), np.zeros((0, 4), dtype=np.float32)


def check_box_iou(ex, label, boxes1, boxes2):
    from mrcnn_np.ops import box_iou

    note, simulated = _target()
    dtype = boxes1.dtype
    case = f"box_iou(boxes1 {shape_str(boxes1.shape)}, boxes2 {shape_str(boxes2.shape)}, {dtype}) [{label}]"
    launcher = function(ex, "box_iou")
    with _recording(ex, "box_iou_kernel") as launches:
        got = call_learner(ex, launcher, (boxes1.copy(), boxes2.copy()), case,
                           _crash_hint("box_iou_kernel", "if i < n and j < m: ..."))
    empty = boxes1.size == 0 or boxes2.size == 0
    _launched("box_iou_kernel", launches, case, empty)
    expected = box_iou(boxes1, boxes2, impl="numpy")
    got = _host_result(got, expected, case, dtype)
    rtol = 0.0 if simulated else GPU_IOU_RTOL[dtype]
    what = f"{case} vs mrcnn_np.ops.box_iou(impl='numpy')" + (", exactly" if simulated else "")
    try:
        assert_close(got, expected, what, rtol, row=lambda i: f"row i = {i}: boxes1[{i}] = {boxes1[i].tolist()}")
    except AssertionError as error:
        def call(box_iou):
            return box_iou(boxes1.copy(), boxes2.copy())
        hint = (MISTAKES.hint("box_iou", got, expected, call) or _coverage_hint(got, expected, launches, rtol, True)
                or _last_bits_hint(got, expected, dtype))
        raise hinted(error, hint) from None
    _zero_grids(launches, "box_iou_kernel", case, True)
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _is_device_function(fn) -> bool:
    """A ``@cuda.jit(device=True)`` function: in the simulator and in numba.cuda itself."""
    device = getattr(fn, "_device", None)
    if device is None:
        device = getattr(fn, "targetoptions", {}).get("device")
    return bool(device)


def _device_function(ex, name):
    """The learner's device function ``name`` and its Python function (what the grader runs on the host)."""
    fn = getattr(ex, name, None)
    if fn is None:
        raise AssertionError(f"your file defines no function {name!r}; keep the stub's names")
    py_func = getattr(fn, "py_func", fn)
    if getattr(py_func, "__module__", ex.__name__) != ex.__name__:
        raise AssertionError(f"{name} in your file is imported from elsewhere; write it yourself")
    if not _is_device_function(fn):
        kind = "a kernel (@cuda.jit)" if hasattr(fn, "py_func") else "a plain Python function"
        raise AssertionError(f"{name} in your file is {kind}: keep @cuda.jit(device=True) above it -- a kernel can "
                             f"call only device functions, which return values, as {name} does")
    return py_func


INDEX_SHAPES = [(2, 3, 4, 5), (3, 1, 7, 7), (1, 2, 1, 3), (2, 256, 7, 7)]


def _index_cases():
    yield from ((shape,) for shape in INDEX_SHAPES)


def check_element_index(ex, shape):
    note, _ = _target()
    element_index = _device_function(ex, "element_index")
    R, C, PH, PW = shape
    expected = np.stack(np.unravel_index(np.arange(R * C * PH * PW), shape), axis=1)  # (size, 4)
    for k, (r, c, p, q) in enumerate(expected.tolist()):
        case = f"element_index(k={k}, C={C}, PH={PH}, PW={PW}) for an array of shape (R, C, PH, PW) = {shape}"
        got = call_learner(ex, element_index, (k, C, PH, PW), case)
        if not isinstance(got, tuple) or len(got) != 4 or not all(isinstance(v, (int, np.integer)) for v in got):
            raise AssertionError(f"{case}:\nexpected a tuple of 4 ints (r, c, p, q), got {got!r}"
                                 + ("\nhint: use // (whole-number division), not /" if isinstance(got, tuple)
                                    and any(isinstance(v, float) for v in got) else ""))
        if tuple(int(v) for v in got) != (r, c, p, q):
            error = AssertionError(f"{case}:\nexpected (r, c, p, q) = {(r, c, p, q)}, got {tuple(int(v) for v in got)}")
            hint = MISTAKES.hint("element_index", got, (r, c, p, q),
                                 lambda f, k=k: getattr(f, "py_func", f)(k, C, PH, PW))
            raise hinted(error, hint)
    return note


# --- task (c) ----------------------------------------------------------------------------------
def _rois(rng, images, boxes, size):
    """(R, 5) rois ``batch_index, x1, y1, x2, y2`` in image pixels of an image ``size`` (h, w)."""
    xy = rng.uniform(-0.2, 0.9, (boxes, 2)) * [size[1], size[0]]
    wh = rng.uniform(0.05, 0.6, (boxes, 2)) * [size[1], size[0]]
    return np.concatenate([rng.integers(0, images, (boxes, 1)), xy, xy + wh], axis=1)


def _roi_cases():
    """(label, features, rois, output_size, spatial_scale, sampling_ratio, aligned)."""
    rng = np.random.default_rng(81)
    features = rng.standard_normal((2, 3, 7, 9))
    rois = _rois(rng, 2, 5, (14, 18))
    rois[:2, 0] = [0, 1]  # boxes on both images
    yield "sampling_ratio=2, aligned=False, float64", features, rois, (3, 4), 0.5, 2, False
    rois32 = _rois(rng, 2, 6, (7, 9))
    rois32[:2, 0] = [1, 0]
    yield ("adaptive sampling_ratio=-1, aligned=True, float32", features.astype(np.float32),
           rois32.astype(np.float32), (3, 3), 1.0, -1, True)
    yield "no boxes: rois (0, 5)", features, np.zeros((0, 5)), (2, 2), 0.5, 2, False


def check_roi_align(ex, label, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    from mrcnn_np.ops.roi_align import roi_align_numpy, sampling_plan

    note, _ = _target()
    dtype = features.dtype
    N, C, H, W = features.shape

    def plan():  # a fresh plan for every call: a launcher cannot change the grader's
        return sampling_plan(rois.copy(), spatial_scale, output_size, sampling_ratio, aligned, H, W, dtype)

    case = (f"roi_align(features {shape_str(features.shape)}, plan of rois {shape_str(rois.shape)} "
            f"(spatial_scale={spatial_scale}, sampling_ratio={sampling_ratio}, aligned={aligned}), "
            f"output_size={output_size}) [{label}]")
    launcher = function(ex, "roi_align")
    with _recording(ex, "roi_align_kernel") as launches:
        got = call_learner(ex, launcher, (features.copy(), plan(), output_size), case,
                           _crash_hint("roi_align_kernel", "if k < R * C * PH * PW: ..."))
    _launched("roi_align_kernel", launches, case, len(rois) == 0)
    expected = roi_align_numpy(features, plan(), output_size)
    got = _host_result(got, expected, case, dtype)
    rtol = ROI_RTOL[dtype]
    try:
        assert_close(got, expected, f"{case} vs mrcnn_np.ops.roi_align.roi_align_numpy", rtol,
                     row=lambda r: f"box r = {r}: image {int(rois[r, 0])}, box {rois[r, 1:].round(3).tolist()}")
    except AssertionError as error:
        def call(roi_align):
            return roi_align(features.copy(), plan(), output_size)
        hint = MISTAKES.hint("roi_align", got, expected, call, rtol=max(rtol, 1e-9))
        hint = hint or _coverage_hint(got, expected, launches, rtol, False)
        if not hint and _wrong_on(getattr(getattr(ex, "element_index", None), "py_func", None), [
                ((k, s[1], s[2], s[3]), tuple(int(v) for v in np.unravel_index(k, s)))
                for s in INDEX_SHAPES[:3] for k in range(math.prod(s))]):
            hint = "your element_index is wrong (task (b)): if roi_align_kernel uses it, fix it first"
        raise hinted(error, hint) from None
    _zero_grids(launches, "roi_align_kernel", case, False)
    return note


TASKS = [
    Task("box_iou", "(a) a 2-D grid: one thread per pair of boxes", for_each_case(_box_cases, check_box_iou)),
    Task("element_index", "(b) a flat thread index -> (r, c, p, q)", for_each_case(_index_cases, check_element_index)),
    Task("roi_align", "(c) RoIAlign forward: one thread per output element",
         for_each_case(_roi_cases, check_roi_align)),
]
