"""Grader of exercise 04: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed float64 cases. bilinear_interpolate is compared with RoIAlign itself
(a box of zero size, sampled once, reads exactly one point) and roi_align with
``mrcnn_np.ops.roi_align.roi_align(impl="numpy")`` and ``torchvision.ops.roi_align``, both
to 1e-10 of the reference's largest value; roi_align_backward (float64) with mrcnn_np's autograd
and torch autograd through ``torchvision.ops.roi_align`` to 1e-10, and with central differences
of ``sum(grad_output * roi_align(features))`` at 96 entries; the levels of map_levels exactly, with
``mrcnn_np.ops.poolers.LevelMapper`` and torchvision's. When a result is wrong in a way the
grader recognises (no -1 margin, no max(size, 1) when not aligned, the wrong count, a
missing eps: the mistakes in ``mistakes.py``, ...), the message ends with a hint.
"""

import math

import numpy as np

from mrcnn_np.exercises import Mistakes, Task, compare, for_each_case, function, references, shape_str
from mrcnn_np.exercises import as_float_array as _as_float_array
from mrcnn_np.exercises import assert_close as _assert_close
from mrcnn_np.exercises import assert_gradient as _assert_gradient
from mrcnn_np.exercises import call_learner as _call
from mrcnn_np.exercises import fmt_vector as _fmt
from mrcnn_np.exercises import matches as _matches
from mrcnn_np.exercises import wrong_on as _wrong_on

STUB = "exercise.py"
RTOL = 1e-10
MISTAKES = Mistakes(__file__)


def _library_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """mrcnn_np's roi_align(impl="numpy") as an array (R, C, ph, pw)."""
    from mrcnn_np.ops.roi_align import roi_align

    return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned, impl="numpy").data


def _torch_roi_align(torch, ops, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    return ops.roi_align(torch.tensor(features), torch.tensor(rois), output_size, spatial_scale, sampling_ratio,
                         aligned).numpy()


# --- task (a) ----------------------------------------------------------------------------------
def _point_rois(points):
    """(P, 5) rois of zero size at (y + 0.5, x + 0.5): with aligned=True, spatial_scale=1 and
    sampling_ratio=1, RoIAlign's single sample point of each is (y + 0.5) - 0.5 = y, x exactly
    (the grader's points are multiples of 1/1024)."""
    return np.array([[0.0, x + 0.5, y + 0.5, x + 0.5, y + 0.5] for _, y, x in points])  # (P, 5)


def _where(y, x, H, W):
    """Which rule of bilinear_interpolate the point (y, x) of an H x W map exercises."""
    if y < -1 or y > H or x < -1 or x > W:
        return "outside the margin (reads 0)"
    if y == -1 or x == -1:
        return "on the limit -1 (still inside: clamped to 0)"
    if y == H or x == W:
        return "on the limit H or W (still inside: reads the last row or column)"
    if y < 0 or x < 0:
        return "between -1 and 0 (clamped to 0)"
    if y > H - 1 or x > W - 1:
        return "past the last row or column (low = high = size - 1)"
    if y == H - 1 or x == W - 1:
        return "on the last row or column"
    return "on a pixel" if float(y).is_integer() and float(x).is_integer() else "inside"


def _bilinear_points(H, W, rng):
    """(where, y, x) sample points of an H x W map: inside, between -1 and 0, past the last row
    or column, on the limits -1 and H (W), and outside. All multiples of 1/1024."""
    tiny = 1 / 1024
    inside = list(zip(rng.integers(0, 64 * max(H - 1, 1), 8) / 64, rng.integers(0, 64 * max(W - 1, 1), 8) / 64,
                      strict=True))
    special = [
        (0.0, 0.0), (H // 2, W // 2),  # on pixels
        (-0.5, W / 2 + 0.25), (H / 2 - 0.375, -0.75), (-0.25, -0.125),  # between -1 and 0
        (-1.0, -1.0), (H / 2 + 0.125, -1.0),  # on the limit -1
        (H - 0.75, 1.5), (0.5, W - 0.25), (H - 0.5, W - 0.5), (H - 1, W / 2 - 0.125),  # the last row / column
        (H, W), (H / 2 + 0.625, W),  # on the limit H, W
        (-1.0 - tiny, 2.0), (0.5, -1.0 - tiny), (H + tiny, 1.0), (0.25, W + tiny),  # just outside
        (-3.0, -3.0), (H + 2.5, W / 2), (0.75, W + 7.0),  # far outside
    ]
    return [(_where(y, x, H, W), float(y), float(x)) for y, x in inside + special]


def _bilinear_cases():
    """(feature (C, H, W), points): a map of 3 x 5 x 7 and one of a single row."""
    rng = np.random.default_rng(41)
    for shape in [(3, 5, 7), (2, 1, 4), (1, 6, 3)]:
        yield rng.standard_normal(shape), _bilinear_points(shape[1], shape[2], rng)


def _bilinear_crash_hint(where):
    def hint(exc):
        if isinstance(exc, IndexError) and where.startswith(("past the last", "on the limit H", "on the last")):
            return ("at the last row (y_low >= H - 1) there is no row after it: use y_low = y_high = H - 1 and "
                    "y = H - 1 (the same for x)")
        if isinstance(exc, IndexError) and "outside" in where:
            return "a point more than one pixel outside the map reads 0: return zeros before indexing the map"
        return None
    return hint


def _learner_points(ex, bilinear, feature, points, case):
    """The learner's values at every point: (P, C), each result checked to be a (C,) array."""
    values = []
    for where, y, x in points:
        what = f"{case(y, x)} [{where}]"
        got = _call(ex, bilinear, (feature.copy(), y, x), what, _bilinear_crash_hint(where))
        values.append(_as_float_array(got, feature.shape[:1], what))
    return np.stack(values)  # P x (C,) -> (P, C)


def _assert_points_close(got, expected, points, case, reference):
    """Fail at the first point whose values differ by more than RTOL x max|expected|."""
    allowed = RTOL * max(float(np.abs(expected).max()), 1.0)
    error = np.abs(got - expected).max(axis=1)  # (P,)
    error[np.isnan(error)] = np.inf
    bad = np.flatnonzero(error > allowed)
    if bad.size:
        i = int(bad[0])
        where, y, x = points[i]
        raise AssertionError(
            f"{case(y, x)} vs {reference}: values differ ({bad.size} of {len(points)} points wrong)\n"
            f"the point is {where}: expected {_fmt(expected[i])}, got {_fmt(got[i])}")


def _point_values(feature, points):
    """(P, C) mrcnn_np's RoIAlign of a zero-size box at each point, sampled once: the point's values."""
    return _library_roi_align(feature[None], _point_rois(points), (1, 1), 1.0, 1, True)[:, :, 0, 0]


def check_bilinear_interpolate(ex, feature, points):
    def case(y, x):
        return f"bilinear_interpolate(feature {shape_str(feature.shape)}, y={y!r}, x={x!r})"

    got = _learner_points(ex, function(ex, "bilinear_interpolate"), feature, points, case)
    refs, note = references(("mrcnn_np.ops.roi_align (a zero-size box sampled once at (y, x))",
                             _point_values(feature, points)),
                            ("torch", "torchvision.ops"), lambda torch, ops: (
                                "torchvision.ops.roi_align (a zero-size box sampled once)", _torch_roi_align(
                                    torch, ops, feature[None], _point_rois(points), (1, 1), 1.0, 1, True)[:, :, 0, 0]))
    compare(got, refs, lambda got, expected, name: _assert_points_close(got, expected, points, case, name),
            lambda expected: MISTAKES.hint("bilinear_interpolate", got, expected, lambda f: np.stack(
                [f(feature.copy(), y, x) for _, y, x in points])))
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _crafted_rois(image_h, image_w):
    """(label, box) pairs in image pixels: outside, partly outside, tiny, thin, zero-size, whole image."""
    return [
        ("wholly outside the image (above, left)", [-40.0, -30.0, -5.0, -2.0]),
        ("wholly outside the image (right)", [image_w + 5.0, 10.0, image_w + 50.0, 30.0]),
        ("partly outside the image (top-left corner)", [-10.0, -10.0, 30.0, 40.0]),
        ("partly outside the image (bottom-right corner)", [image_w - 20.0, image_h - 12.0, image_w + 25.0,
                                                             image_h + 30.0]),
        ("tiny: smaller than a feature pixel", [10.0, 10.0, 10.2, 10.1]),
        ("thin: less than a feature pixel high", [20.0, 33.0, 60.0, 33.5]),
        ("zero width (x1 == x2)", [30.0, 20.0, 30.0, 60.0]),
        ("the whole image", [0.0, 0.0, float(image_w), float(image_h)]),
    ]


def _roi_case(rng, n_random, batch, image_size):
    """rois (R, 5) with a label per row: the crafted boxes, then random ones of 2 to 90 pixels."""
    image_h, image_w = image_size
    labels, boxes = [], []
    for label, box in _crafted_rois(image_h, image_w):
        labels.append(label)
        boxes.append(box)
    xy = rng.uniform(-10, [image_w - 5, image_h - 5], (n_random, 2))
    wh = np.exp(rng.uniform(np.log(2.0), np.log(90.0), (n_random, 2)))
    for b in np.concatenate([xy, xy + wh], axis=1):
        labels.append("a random box")
        boxes.append(b.tolist())
    batch_index = np.arange(len(boxes)) % batch  # every image gets boxes
    rois = np.concatenate([batch_index[:, None].astype(np.float64), np.array(boxes)], axis=1)  # (R, 5)
    return rois, labels


def _roi_align_cases():
    """(label, features, rois, labels of the rois, output_size, spatial_scale, sampling_ratio, aligned)."""
    rng = np.random.default_rng(42)
    features = rng.standard_normal((3, 4, 23, 31))  # P2-like: an image of 92 x 124 at spatial_scale 1/4
    rois, labels = _roi_case(rng, 8, 3, (92, 124))
    yield "aligned=False, sampling_ratio=2 (Mask R-CNN's box head)", features, rois, labels, (7, 7), 0.25, 2, False
    yield "aligned=True, sampling_ratio=2", features, rois, labels, (7, 7), 0.25, 2, True
    yield "aligned=False, sampling_ratio=0 (adaptive)", features, rois, labels, (5, 3), 0.25, 0, False
    yield "aligned=True, sampling_ratio=-1 (adaptive)", features, rois, labels, (5, 3), 0.25, -1, True
    small = rng.standard_normal((2, 3, 12, 16))  # P3-like: an image of 96 x 128 at spatial_scale 1/8
    rois, labels = _roi_case(rng, 2, 2, (96, 128))
    yield "aligned=False, sampling_ratio=2, 14 x 14 bins (the mask head's)", small, rois[4:], labels[4:], \
        (14, 14), 0.125, 2, False
    on_map = np.concatenate([np.zeros((len(rois), 1)), rois[:, 1:] / 8], axis=1)  # (R, 5): image 0, map pixels
    yield "aligned=True, sampling_ratio=0, spatial_scale=1 (one image)", small[:1], on_map, labels, (3, 2), 1.0, 0, True
    yield "no boxes: rois (0, 5)", small, np.zeros((0, 5)), [], (7, 7), 0.125, 2, False


def _roi_align_hint(ex, got, expected, call):
    """A hint for a wrong shape or transposed bins, else of the mistake ``got`` reproduces, else about
    the learner's own bilinear_interpolate."""
    R, C, ph, pw = expected.shape
    if np.shape(got) == (R, C, pw, ph) != expected.shape:
        return "the output is (R, C, ph, pw): ph bins along y (rows), pw along x (columns)"
    if np.shape(got) == (R, ph, pw, C) != expected.shape:
        return "the output is (R, C, ph, pw): channels before the bins"
    if ph == pw and _matches(got, expected.transpose(0, 1, 3, 2)) and not _matches(got, expected):
        return "the bins are transposed: out[r, :, p, q] is bin row p (along y) and column q (along x)"
    hint = MISTAKES.hint("roi_align", got, expected, call)
    points = [((feature, y, x), value) for feature, points in _bilinear_cases()
              for (_, y, x), value in zip(points, _point_values(feature, points), strict=True)]
    if not hint and _wrong_on(getattr(ex, "bilinear_interpolate", None), points):  # which roi_align may use
        return "your bilinear_interpolate is wrong (task (a)): if roi_align uses it, fix it first"
    return hint


def _roi_align_crash_hint(exc):
    if isinstance(exc, ZeroDivisionError):
        return ("count = max(g_h * g_w, 1): with sampling_ratio <= 0 a box of zero width has g_w = 0 sample "
                "columns, and its bins read 0")
    return None


def check_roi_align(ex, label, features, rois, labels, output_size, scale, sampling, aligned):
    case = (f"roi_align(features {shape_str(features.shape)}, rois {shape_str(rois.shape)}, "
            f"output_size={output_size}, spatial_scale={scale}, sampling_ratio={sampling}, aligned={aligned})"
            f" [{label}]")
    args = (features, rois, output_size, scale, sampling, aligned)

    def call(function):
        return function(features.copy(), rois.copy(), *args[2:])

    def row(r):
        return f"rois[{r}] = image {int(rois[r, 0])}, box {_fmt(rois[r, 1:])} ({labels[r]})"

    got = _call(ex, call, (function(ex, "roi_align"),), case, _roi_align_crash_hint)
    refs, note = references(("mrcnn_np.ops.roi_align", _library_roi_align(*args)), ("torch", "torchvision.ops"),
                            lambda torch, ops: ("torchvision.ops.roi_align", _torch_roi_align(torch, ops, *args)))
    compare(got, refs, lambda got, expected, name: _assert_close(got, expected, f"{case} vs {name}", RTOL, row=row),
            lambda expected: _roi_align_hint(ex, got, expected, call))
    return note


# --- task (c) ----------------------------------------------------------------------------------
def _backward_cases():
    """(label, features, rois, labels of the rois, output_size, spatial_scale, sampling_ratio, aligned,
    grad_output): the forward's cases, each with a random gradient of its output."""
    rng = np.random.default_rng(44)
    for label, features, rois, labels, output_size, *rest in _roi_align_cases():
        grad_output = rng.standard_normal((len(rois), features.shape[1], *output_size))  # (R, C, ph, pw)
        yield label, features, rois, labels, output_size, *rest, grad_output


def _library_roi_align_backward(grad_output, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """d features by mrcnn_np's autograd: roi_align(impl="numpy") on a Tensor, then backward(grad_output)."""
    from mrcnn_np.autograd import Tensor
    from mrcnn_np.ops.roi_align import roi_align

    x = Tensor(features.copy(), requires_grad=True)
    roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned, impl="numpy").backward(grad_output)
    return x.grad


def _torch_roi_align_backward(torch, ops, grad_output, features, rois, output_size, spatial_scale, sampling_ratio,
                              aligned):
    """d features by torch autograd through torchvision.ops.roi_align."""
    x = torch.tensor(features, requires_grad=True)
    ops.roi_align(x, torch.tensor(rois), output_size, spatial_scale, sampling_ratio, aligned).backward(
        torch.tensor(grad_output))
    return x.grad.numpy()


def check_roi_align_backward(ex, label, features, rois, labels, output_size, scale, sampling, aligned, grad_output):
    case = (f"roi_align_backward(grad_output {shape_str(grad_output.shape)}, rois {shape_str(rois.shape)}, "
            f"input_shape={shape_str(features.shape)}, spatial_scale={scale}, sampling_ratio={sampling}, "
            f"aligned={aligned}) [{label}]")
    args = (features, rois, output_size, scale, sampling, aligned)

    def call(function):
        return function(grad_output.copy(), rois.copy(), features.shape, scale, sampling, aligned)

    def forward_sum(x):
        """sum(grad_output * roi_align(x)): its gradient with respect to x is what the task returns."""
        return float((grad_output * _library_roi_align(x, *args[1:])).sum())

    def check(got, expected, name):
        _assert_close(got, expected, f"{case} vs {name}", RTOL)
        if name.startswith("mrcnn_np"):  # once: the third judge needs no reference implementation
            _assert_gradient(got, forward_sum, features, f"{case}, d sum(grad_output * roi_align(features))",
                             probes=96)

    got = _call(ex, call, (function(ex, "roi_align_backward"),), case, _roi_align_crash_hint)
    refs, note = references(("mrcnn_np.ops.roi_align (autograd)", _library_roi_align_backward(grad_output, *args)),
                            ("torch", "torchvision.ops"), lambda torch, ops: (
                                "torch autograd through torchvision.ops.roi_align",
                                _torch_roi_align_backward(torch, ops, grad_output, *args)))
    compare(got, refs, check, lambda expected: _backward_hint(got, expected, call))
    return note


def _backward_hint(got, expected, call):
    """A hint for a wrong shape, else the hint of the mistake ``got`` reproduces."""
    if np.ndim(got) == 4 and np.shape(got)[1:] == expected.shape[1:] and np.shape(got) != expected.shape:
        return ("the gradient has the features' shape input_shape (N, C, H, W), one map per image: add each box's "
                "share into the map of its own image")
    return MISTAKES.hint("roi_align_backward", got, expected, call)


# --- task (d) ----------------------------------------------------------------------------------
def _square(x1, side):
    """The box [x1, x1, x1 + side, x1 + side]; in floating point its side is (x1 + side) - x1."""
    return [x1, x1, x1 + side, x1 + side]


def _level_cases():
    """(label, boxes (R, 4), keyword arguments of map_levels)."""
    rng = np.random.default_rng(43)
    xy = rng.uniform(0, 600, (40, 2))
    wh = np.exp(rng.uniform(np.log(4.0), np.log(1000.0), (40, 2)))
    random_boxes = np.concatenate([xy, xy + wh], axis=1)
    yield "random boxes of 4 to 1000 px", random_boxes, {}
    exact = np.array([[0.0, 0.0, s, s] for s in (14.0, 56.0, 111.0, 112.0, 113.0, 223.0, 224.0, 225.0, 447.0,
                                                  448.0, 896.0, 2000.0)]
                     + [[10.0, 20.0, 66.0, 244.0], [5.0, 5.0, 453.0, 117.0], [0.0, 0.0, 224.0, 896.0]])
    yield "boxes of exactly 112, 224, 448 px (squares, and 56 x 224, 448 x 112, 224 x 896 rectangles)", exact, {}
    eps = np.array([_square(400.04, 112.0), _square(288.04, 224.0), _square(1600.003, 448.0),
                    _square(400.05, 112.0), [912.08, 0.0, 912.08 + 112.0, 1792.0]])
    yield ("boxes of 112, 224, 448 px whose float corners make them a hair (< 1e-12 px) smaller "
           "(e.g. [400.04, 400.04, 512.04, 512.04]: 111.99999999999994 px wide)"), eps, {}
    yield ("k_min=3, k_max=6, canonical_scale=200, canonical_level=5, eps=0.01", np.concatenate([random_boxes[:20],
           exact]), dict(k_min=3, k_max=6, canonical_scale=200, canonical_level=5, eps=0.01))
    yield "no boxes: (0, 4)", np.zeros((0, 4)), {}


LEVEL_DEFAULTS = dict(k_min=2, k_max=5, canonical_scale=224, canonical_level=4, eps=1e-6)


def _assert_same_levels(got, expected, boxes, what):
    expected = np.asarray(expected)
    if got is None:
        raise AssertionError(f"{what}:\nexpected an int64 array of shape {shape_str(expected.shape)}, got None "
                             "(a missing return?)")
    got = np.asarray(got)
    if got.shape != expected.shape:
        raise AssertionError(f"{what}:\nexpected shape {shape_str(expected.shape)}, got {shape_str(got.shape)}")
    if got.dtype != np.int64:
        hint = "\nhint: np.floor returns floats: convert with .astype(np.int64)" if got.dtype.kind == "f" else ""
        raise AssertionError(f"{what}:\nexpected int64 levels, got dtype {got.dtype}{hint}")
    wrong = np.flatnonzero(got != expected)
    if wrong.size:
        i = int(wrong[0])
        side = math.sqrt((boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1]))
        raise AssertionError(f"{what}: {wrong.size} of {len(expected)} levels differ (compared exactly)\n"
                             f"first at box {i} = {_fmt(boxes[i])}, sqrt(area) = {side!r}: expected level "
                             f"{int(expected[i])}, got {int(got[i])}")


def check_map_levels(ex, label, boxes, kwargs):
    from mrcnn_np.ops.poolers import LevelMapper

    arguments = {**LEVEL_DEFAULTS, **kwargs}
    shown = "".join(f", {k}={v}" for k, v in kwargs.items())
    case = f"map_levels(boxes {shape_str(boxes.shape)}{shown}) [{label}]"

    def call(map_levels):
        return map_levels(boxes.copy(), **kwargs)

    got = _call(ex, call, (function(ex, "map_levels"),), case)
    refs, note = references(("mrcnn_np.ops.poolers.LevelMapper (+ k_min)", LevelMapper(*arguments.values())([boxes])
                             + arguments["k_min"]), ("torch", "torchvision.ops.poolers"), lambda torch, poolers: (
        "torchvision LevelMapper (+ k_min)", poolers.LevelMapper(*arguments.values())([torch.tensor(boxes)]).numpy()
        + arguments["k_min"]))
    compare(got, refs, lambda got, expected, name: _assert_same_levels(got, expected, boxes, f"{case} vs {name}"),
            lambda expected: MISTAKES.hint("map_levels", got, expected, call))
    return note


TASKS = [
    Task("bilinear_interpolate", "(a) one point, bilinearly interpolated",
         for_each_case(_bilinear_cases, check_bilinear_interpolate)),
    Task("roi_align", "(b) a ph x pw grid of averaged samples per box",
         for_each_case(_roi_align_cases, check_roi_align)),
    Task("roi_align_backward", "(c) the gradient of roi_align w.r.t. the features",
         for_each_case(_backward_cases, check_roi_align_backward)),
    Task("map_levels", "(d) the FPN level of each box", for_each_case(_level_cases, check_map_levels)),
]
