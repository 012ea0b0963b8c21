"""Grader of exercise 04: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed float64 cases. bilinear_interpolate is compared with RoIAlign itself
(a box of zero size, sampled once, reads exactly one point) and roi_align with
``mrcnn_np.ops.roi_align.roi_align(impl="numpy")`` and ``torchvision.ops.roi_align``, both
to 1e-10 of the reference's largest value; the levels of map_levels exactly, with
``mrcnn_np.ops.poolers.LevelMapper`` and torchvision's. When a result is wrong in a way the
grader recognises (no -1 margin, no max(size, 1) when not aligned, the wrong count, a
missing eps, ...), the message ends with a hint.
"""

import math

import numpy as np

from mrcnn_np.exercises import Task, assert_close, function, shape_str
from mrcnn_np.exercises import as_float_array as _as_float_array
from mrcnn_np.exercises import call_learner as _call
from mrcnn_np.exercises import fmt_vector as _fmt
from mrcnn_np.exercises import hinted as _hinted
from mrcnn_np.exercises import torch_modules as _torch_modules

STUB = "exercise.py"
RTOL = 1e-10




def _without_samples(rois, output_size, spatial_scale, sampling_ratio, aligned):
    """(R,) bool: the boxes whose bins hold no sample point -- aligned, sampling_ratio <= 0 and a
    box of zero width or height, so that g = ceil(0 / bins) = 0. Their bins read 0."""
    if aligned and sampling_ratio <= 0 and len(rois):
        ph, pw = output_size
        x1, y1, x2, y2 = (rois[:, k] * spatial_scale - 0.5 for k in range(1, 5))
        return (np.ceil((y2 - y1) / ph) == 0) | (np.ceil((x2 - x1) / pw) == 0)
    return np.zeros(len(rois), dtype=bool)


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


def _bilinear_variant(feature, y, x, margin=1.0, inclusive=True, clamp=True, low_of=int, swap=False):
    """torchvision's bilinear read of (y, x), or one with a deliberate mistake (for hints)."""
    _, H, W = feature.shape
    if inclusive:
        outside = y < -margin or y > H or x < -margin or x > W
    else:
        outside = y <= -margin or y >= H or x <= -margin or x >= W
    if outside:
        return np.zeros(feature.shape[0])

    def taps(t, size):
        t = max(t, 0.0) if clamp else t
        low = low_of(t)
        if low >= size - 1:
            low = high = size - 1
            t = float(low)
        else:
            high = low + 1
        frac = t - low
        return (low, high, frac, 1 - frac) if swap else (low, high, 1 - frac, frac)

    y_low, y_high, hy, ly = taps(y, H)
    x_low, x_high, hx, lx = taps(x, W)
    return (hy * hx * feature[:, y_low, x_low] + hy * lx * feature[:, y_low, x_high]
            + ly * hx * feature[:, y_high, x_low] + ly * lx * feature[:, y_high, x_high])


BILINEAR_HINTS = [
    (dict(margin=0.0), "a point reads 0 only when it is more than one pixel outside: y < -1 or y > H, x < -1 or "
                       "x > W; between -1 and 0 it is clamped to 0 and reads the first row / column"),
    (dict(inclusive=False), "the limits are inside: y = -1 and y = H (x = -1, x = W) read the edge pixel; "
                            "zeros only for y < -1 or y > H (x < -1 or x > W)"),
    (dict(clamp=False), "clamp a negative coordinate to 0 before taking int(y) (y = max(y, 0)): a point between "
                        "-1 and 0 reads row 0 with weight 1, it does not extrapolate"),
    (dict(clamp=False, low_of=math.floor), "clamp a negative coordinate to 0 first (y = max(y, 0)): floor(-0.5) "
                                           "is -1, and feature[:, -1] is the *last* row in NumPy"),
    (dict(low_of=round), "y_low = int(y), the pixel at or before the point (floor), not the nearest one (round)"),
    (dict(swap=True), "the nearer pixel weighs more: y_low gets hy = 1 - (y - y_low), y_high gets ly = y - y_low"),
]


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


def _bilinear_hint(got, feature, points, expected):
    for kwargs, hint in BILINEAR_HINTS:
        try:
            variant = np.stack([_bilinear_variant(feature, y, x, **kwargs) for _, y, x in points])
        except IndexError:
            continue
        if np.allclose(got, variant, rtol=1e-9, atol=1e-12) and not np.allclose(variant, expected, rtol=1e-9,
                                                                               atol=1e-12):
            return hint
    return None


def check_bilinear_interpolate(ex):
    bilinear = function(ex, "bilinear_interpolate")
    note = None
    for feature, points in _bilinear_cases():
        def case(y, x, shape=feature.shape):
            return f"bilinear_interpolate(feature {shape_str(shape)}, y={y!r}, x={x!r})"

        got = _learner_points(ex, bilinear, feature, points, case)
        rois = _point_rois(points)
        expected = _library_roi_align(feature[None], rois, (1, 1), 1.0, 1, True)[:, :, 0, 0]  # (P, C, 1, 1) -> (P, C)
        try:
            _assert_points_close(got, expected, points, case,
                                 "mrcnn_np.ops.roi_align (a zero-size box sampled once at (y, x))")
        except AssertionError as error:
            raise _hinted(error, _bilinear_hint(got, feature, points, expected)) from None
        modules, note = _torch_modules("torch", "torchvision.ops")
        if modules:
            torch, ops = modules
            theirs = _torch_roi_align(torch, ops, feature[None], rois, (1, 1), 1.0, 1, True)[:, :, 0, 0]
            _assert_points_close(got, theirs, points, case, "torchvision.ops.roi_align (a zero-size box sampled once)")
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


def _axis_weights(start, bin_size, grid, bins, size, point=0.5, margin=1.0):
    """Along one axis of one box: (bins, size) summed interpolation weights of each bin's sample
    points, and (bins,) how many of them are inside; RoIAlign's weights are separable."""
    M, inside = np.zeros((bins, size)), np.zeros(bins)
    for p in range(bins):
        for i in range(grid):
            t = start + p * bin_size + (i + point) * bin_size / grid
            if t < -margin or t > size:
                continue
            inside[p] += 1
            t = max(t, 0.0)
            low = int(t)
            if low >= size - 1:
                low = high = size - 1
                t = float(low)
            else:
                high = low + 1
            M[p, low] += 1 - (t - low)
            M[p, high] += t - low
    return M, inside


def _roi_align_variant(features, rois, output_size, spatial_scale, sampling_ratio, aligned, offset="aligned",
                       min_one="not aligned", count="grid", grid=math.ceil, point=0.5, margin=1.0, scale=True,
                       batch=True):
    """torchvision's RoIAlign, or one with a deliberate mistake (for hints), as
    ``W_y @ feature @ W_x.T / count`` per box."""
    _, C, H, W = features.shape
    ph, pw = output_size
    out = np.zeros((len(rois), C, ph, pw))
    shift = {"aligned": 0.5 if aligned else 0.0, "never": 0.0, "always": 0.5, "plus": -0.5 if aligned else 0.0,
             "before scale": 0.0}[offset]
    s = spatial_scale if scale else 1.0
    for r, (b, *box) in enumerate(rois):
        if offset == "before scale" and aligned:
            x1, y1, x2, y2 = ((v - 0.5) * s for v in box)
        else:
            x1, y1, x2, y2 = (v * s - shift for v in box)
        roi_w, roi_h = x2 - x1, y2 - y1
        if min_one == "always" or (min_one == "not aligned" and not aligned):
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        if sampling_ratio > 0:
            g_h = g_w = sampling_ratio
        elif grid == "literal":
            g_h = g_w = max(sampling_ratio, 0)
        else:
            g_h, g_w = int(grid(roi_h / ph)), int(grid(roi_w / pw))
        Wy, inside_y = _axis_weights(y1, roi_h / ph, g_h, ph, H, point, margin)  # (ph, H), (ph,)
        Wx, inside_x = _axis_weights(x1, roi_w / pw, g_w, pw, W, point, margin)  # (pw, W), (pw,)
        n = {"grid": max(g_h * g_w, 1), "no max": g_h * g_w,
             "inside": np.maximum(inside_y[:, None] * inside_x[None, :], 1)}[count]
        feature = features[int(b) if batch else 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r] = Wy @ feature @ Wx.T / n  # (ph, H) @ (C, H, W) @ (W, pw) -> (C, ph, pw)
    return out


ROI_ALIGN_HINTS = [
    (dict(offset="never"), "aligned=True shifts the scaled box by half a pixel: x1 * spatial_scale - 0.5 (all four "
                           "coordinates)"),
    (dict(offset="always"), "shift by -0.5 only when aligned=True; aligned=False (Mask R-CNN's default) uses "
                            "x1 * spatial_scale as it is"),
    (dict(offset="plus"), "aligned=True shifts by -0.5 (x1 * spatial_scale - 0.5), not +0.5"),
    (dict(offset="before scale"), "scale first, then shift: x1 * spatial_scale - 0.5, not (x1 - 0.5) * "
                                  "spatial_scale"),
    (dict(min_one="never"), "when aligned=False, a box smaller than one feature pixel is read as 1 pixel: "
                            "roi_w = max(x2 - x1, 1), roi_h = max(y2 - y1, 1), on the scaled box"),
    (dict(min_one="always"), "the minimum size of 1 pixel is for aligned=False only; with aligned=True a tiny box "
                             "stays tiny"),
    (dict(count="inside"), "divide by the number of sample points, max(g_h * g_w, 1), including those outside the "
                           "map that read 0, not by the number inside"),
    (dict(count="no max"), "count = max(g_h * g_w, 1): with sampling_ratio <= 0 a box of zero width has g_w = 0 "
                           "sample columns, and its bins read 0, not 0 / 0"),
    (dict(grid=round), "the adaptive grid rounds up: g_h = ceil(roi_h / ph), not round(roi_h / ph)"),
    (dict(grid=math.floor), "the adaptive grid rounds up: g_h = ceil(roi_h / ph), not floor or int()"),
    (dict(grid="literal"), "sampling_ratio <= 0 means adaptive: ceil(roi_h / ph) x ceil(roi_w / pw) points per bin"),
    (dict(point=0.0), "sample at the centres of the g_h x g_w sub-bins: y1 + p * bin_h + (i + 0.5) * bin_h / g_h"),
    (dict(point=1.0), "sample at the centres of the g_h x g_w sub-bins: i + 0.5 with i counted from 0"),
    (dict(scale=False), "rois are in image pixels: multiply them by spatial_scale to get feature-map coordinates"),
    (dict(batch=False), "read each box from its own image: features[int(rois[r, 0])]"),
    (dict(margin=0.0), "a sample point reads 0 only when it is more than one pixel outside the map (y < -1 or "
                       "y > H, x < -1 or x > W), as in task (a)"),
]


def _roi_align_hint(ex, got, expected, case_args):
    """The hint of the first recognised mistake ``got`` shows, else one about the learner's own
    bilinear_interpolate, else None."""
    features, rois, output_size = case_args[:3]
    R, C, ph, pw = expected.shape
    try:
        received = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if received.shape != expected.shape:
        if received.shape == (R, C, pw, ph) and ph != pw:
            return "the output is (R, C, ph, pw): ph bins along y (rows), pw along x (columns)"
        if received.shape == (R, ph, pw, C):
            return "the output is (R, C, ph, pw): channels before the bins"
        return None
    if ph == pw and np.allclose(received, expected.transpose(0, 1, 3, 2), rtol=1e-9, atol=1e-12):
        return "the bins are transposed: out[r, :, p, q] is bin row p (along y) and column q (along x)"
    for kwargs, hint in ROI_ALIGN_HINTS:
        variant = _roi_align_variant(*case_args, **kwargs)
        if (np.allclose(received, variant, rtol=1e-9, atol=1e-12, equal_nan=True)
                and not np.allclose(variant, expected, rtol=1e-9, atol=1e-12, equal_nan=True)):
            return hint
    return _own_bilinear_hint(ex)


def _own_bilinear_hint(ex):
    """A hint when the learner's own bilinear_interpolate (which roi_align may use) is wrong."""
    try:
        for feature, points in _bilinear_cases():
            mine = np.stack([np.asarray(ex.bilinear_interpolate(feature.copy(), y, x), dtype=np.float64)
                             for _, y, x in points])
            expected = np.stack([_bilinear_variant(feature, y, x) for _, y, x in points])
            if mine.shape != expected.shape or not np.allclose(mine, expected, rtol=1e-9, atol=1e-12):
                return "your bilinear_interpolate is wrong (task (a)): if roi_align uses it, fix it first"
    except Exception:  # not written yet, or crashes: no hint from here
        return None
    return None


def _roi_align_crash_hint(exc):
    if isinstance(exc, ZeroDivisionError):
        return ("count = max(g_h * g_w, 1): with sampling_ratio <= 0 a box of zero width has g_w = 0 sample "
                "columns, and its bins read 0")
    return None


def _worst_roi(got, expected, rois, labels):
    """``rois[r] = [...] (label)`` of the box with the largest error."""
    with np.errstate(invalid="ignore"):
        error = np.abs(np.asarray(got, dtype=np.float64) - expected).reshape(len(rois), -1)
    error[np.isnan(error)] = np.inf
    r = int(np.argmax(error.max(axis=1)))
    batch, *box = rois[r]
    return f"the largest error is in rois[{r}] = image {int(batch)}, box {_fmt(box)} ({labels[r]})"


def check_roi_align(ex):
    roi_align = function(ex, "roi_align")
    note = None
    for label, features, rois, labels, output_size, scale, sampling, aligned in _roi_align_cases():
        case = (f"roi_align(features {shape_str(features.shape)}, rois {shape_str(rois.shape)}, "
                f"output_size={output_size}, spatial_scale={scale}, sampling_ratio={sampling}, aligned={aligned})"
                f" [{label}]")
        args = (features, rois, output_size, scale, sampling, aligned)
        got = _call(ex, roi_align, (features.copy(), rois.copy(), *args[2:]), case, _roi_align_crash_hint)
        expected = _library_roi_align(*args)
        try:
            assert_close(got, expected, f"{case} vs mrcnn_np.ops.roi_align", RTOL)
        except AssertionError as error:
            lines = str(error)
            if len(rois) and np.shape(got) == expected.shape:
                lines += "\n" + _worst_roi(got, expected, rois, labels)
            raise _hinted(AssertionError(lines), _roi_align_hint(ex, got, expected, args)) from None
        modules, note = _torch_modules("torch", "torchvision.ops")
        if modules:
            torch, ops = modules
            theirs = _torch_roi_align(torch, ops, *args)
            assert_close(got, theirs, f"{case} vs torchvision.ops.roi_align", RTOL)
    return note


# --- task (c) ----------------------------------------------------------------------------------
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


def _level_variant(boxes, k_min=2, k_max=5, canonical_scale=224, canonical_level=4, eps=1e-6, floor=np.floor,
                   log=np.log2, sqrt=np.sqrt, clamp=True, index=False):
    """torchvision's LevelMapper levels (k_min..k_max), or with one deliberate mistake (for hints)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    k = floor(canonical_level + log(sqrt(area) / canonical_scale) + eps)
    if clamp:
        k = np.clip(k, k_min, k_max)
    return k - k_min if index else k


LEVEL_HINTS = [
    (dict(eps=0.0), "add eps before the floor: a box of 112 x 112 px at x1 = 400.04 is 111.99999999999994 px wide "
                    "in floating point, and must stay on level 3"),
    (dict(floor=np.round), "floor, not round: a box of 200 px has 4 + log2(200 / 224) = 3.84, level 3"),
    (dict(clamp=False), "clamp the level to [k_min, k_max] (np.clip): no level below k_min or above k_max"),
    (dict(index=True), "return the level k itself (k_min..k_max), not the index k - k_min that LevelMapper returns"),
    (dict(sqrt=lambda a: a), "a box's scale is sqrt(area), the side of the square of the same area"),
    (dict(log=np.log), "log2, not the natural logarithm: one level up per doubling of the box's side"),
]


def _level_hint(got, boxes, kwargs):
    arguments = {**LEVEL_DEFAULTS, **kwargs}
    expected = _level_variant(boxes, **arguments)
    candidates = [({**arguments, **mistake}, hint) for mistake, hint in LEVEL_HINTS]
    if kwargs:
        candidates.append((LEVEL_DEFAULTS, "use the arguments k_min, k_max, canonical_scale, canonical_level and "
                                           "eps: the grader passes other values than the defaults"))
    with np.errstate(divide="ignore", invalid="ignore"):
        for arguments, hint in candidates:
            variant = _level_variant(boxes, **arguments)
            if np.array_equal(got, variant) and not np.array_equal(variant, expected):
                return hint
    return None


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


def check_map_levels(ex):
    from mrcnn_np.ops.poolers import LevelMapper

    map_levels = function(ex, "map_levels")
    note = None
    for label, boxes, kwargs in _level_cases():
        arguments = {**LEVEL_DEFAULTS, **kwargs}
        shown = "".join(f", {k}={v}" for k, v in kwargs.items())
        case = f"map_levels(boxes {shape_str(boxes.shape)}{shown}) [{label}]"
        got = _call(ex, map_levels, (boxes.copy(),), case, kwargs=kwargs)
        mapper = LevelMapper(arguments["k_min"], arguments["k_max"], arguments["canonical_scale"],
                             arguments["canonical_level"], arguments["eps"])
        expected = mapper([boxes]) + arguments["k_min"]
        try:
            _assert_same_levels(got, expected, boxes, f"{case} vs mrcnn_np.ops.poolers.LevelMapper (+ k_min)")
        except AssertionError as error:
            hint = _level_hint(got, boxes, kwargs) if np.shape(got) == expected.shape and "hint:" not in str(error) \
                else None
            raise _hinted(error, hint) from None
        modules, note = _torch_modules("torch", "torchvision.ops.poolers")
        if modules:
            torch, poolers = modules
            theirs = poolers.LevelMapper(arguments["k_min"], arguments["k_max"], arguments["canonical_scale"],
                                         arguments["canonical_level"], arguments["eps"])([torch.tensor(boxes)])
            _assert_same_levels(got, theirs.numpy() + arguments["k_min"], boxes,
                                f"{case} vs torchvision LevelMapper (+ k_min)")
    return note


TASKS = [
    Task("bilinear_interpolate", "(a) one point, bilinearly interpolated", check_bilinear_interpolate),
    Task("roi_align", "(b) a ph x pw grid of averaged samples per box", check_roi_align),
    Task("map_levels", "(c) the FPN level of each box", check_map_levels),
]
