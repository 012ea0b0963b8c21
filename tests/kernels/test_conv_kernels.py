"""The tiled convolutions (:mod:`mrcnn_np.kernels.conv`, ``impl="numba"``) against their
specification, the im2col versions of :mod:`mrcnn_np.nn.conv` (``impl="numpy"``): forward and
backward (input, weight and bias gradients), conv2d and conv_transpose2d, float32 and float64, on
odd shapes, strides, dilations and paddings, 1x1 convs, batches of many small images, and tile
sizes small enough that every tile boundary case (a band of rows, several whole images, one row)
occurs. The forward products have the specification's reductions, so the forward is compared
bit for bit where one tile covers the product; the gradients are summed tile by tile, so they
agree to rounding (float64: 1e-12 relative; float32: 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np.autograd import Tensor
from mrcnn_np.kernels import conv as conv_kernels
from mrcnn_np.nn import functional as F

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}

# (N, C_in, H, W, C_out, (kh, kw), stride, padding, dilation)
CONV_CASES = [
    (2, 3, 9, 7, 4, (3, 2), (2, 1), (1, 2), (1, 2)),
    (3, 5, 6, 6, 2, (1, 1), 1, 0, 1),            # pointwise: no gather
    (40, 3, 6, 6, 2, (1, 1), 1, 0, 1),           # pointwise on many small maps (RoIs): two groups of images
    (0, 3, 6, 6, 2, (1, 1), 1, 0, 1),            # pointwise, no images
    (2, 3, 5, 5, 2, (1, 1), 2, 0, 1),            # strided 1x1 (a downsample)
    (1, 4, 11, 13, 3, (3, 3), 2, 1, 1),          # a 3x3 / 2 of the backbone
    (5, 4, 4, 4, 3, (3, 3), 1, 1, 1),            # many small images (the mask head)
    (1, 2, 17, 9, 3, (7, 7), 2, 3, 1),           # the stem
    (2, 3, 8, 8, 2, (3, 3), 1, 4, 1),            # padding wider than the kernel: all-zero taps
    (1, 2, 5, 12, 2, (2, 3), (1, 3), (0, 1), (2, 1)),
    (0, 3, 6, 6, 2, (3, 3), 1, 1, 1),            # no images (no RoIs): empty results
]
TILES = [1 << 20, 50, 7]  # one tile; a few rows or images per tile; one row (or image) per tile


@pytest.fixture
def tile_values(request):
    before = conv_kernels.TILE_VALUES
    conv_kernels.TILE_VALUES = request.param
    yield request.param
    conv_kernels.TILE_VALUES = before


def close(got, expected, dtype):
    assert got.shape == expected.shape and got.dtype == expected.dtype
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=RTOL[dtype] * scale)


def run(op, impl, x, w, b, **kw):
    """(out, d_input, d_weight, d_bias) of ``op`` with ``impl``, for a fixed output gradient."""
    xt, wt, bt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    out = op(xt, wt, bt, impl=impl, **kw)
    g = np.random.default_rng(7).standard_normal(out.shape).astype(x.dtype)
    (out * Tensor(g)).sum().backward()
    return out.data, xt.grad, wt.grad, bt.grad


@pytest.mark.parametrize("tile_values", TILES, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_tiled_equals_the_specification(case, dtype, tile_values):
    N, C, H, W, C_out, k, stride, padding, dilation = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C_out, C, *k)).astype(dtype)
    b = rng.standard_normal(C_out).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    spec = run(F.conv2d, "numpy", x, w, b, **kw)
    fast = run(F.conv2d, "numba", x, w, b, **kw)
    if tile_values == TILES[0]:
        np.testing.assert_array_equal(fast[0], spec[0])  # the same products, in one tile
    for got, expected in zip(fast, spec, strict=True):
        close(got, expected, dtype)


# (N, C_in, H, W, C_out, (kh, kw), stride, padding, output_padding, dilation)
TRANSPOSE_CASES = [
    (3, 4, 5, 5, 2, (2, 2), 2, 0, 0, 1),         # the mask head's 2x2 / 2 deconvolution
    (2, 3, 4, 6, 2, (3, 3), 2, 1, 1, 1),         # overlapping taps, output padding
    (1, 2, 7, 3, 3, (3, 2), (1, 2), (1, 0), (0, 1), (2, 1)),
    (4, 3, 3, 3, 5, (1, 1), 1, 0, 0, 1),
    (0, 4, 5, 5, 2, (2, 2), 2, 0, 0, 1),
]


@pytest.mark.parametrize("tile_values", TILES, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv_transpose2d_tiled_equals_the_specification(case, dtype, tile_values):
    N, C, H, W, C_out, k, stride, padding, output_padding, dilation = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C, C_out, *k)).astype(dtype)
    b = rng.standard_normal(C_out).astype(dtype)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation)
    spec = run(F.conv_transpose2d, "numpy", x, w, b, **kw)
    fast = run(F.conv_transpose2d, "numba", x, w, b, **kw)
    for got, expected in zip(fast, spec, strict=True):
        close(got, expected, dtype)


def test_auto_is_the_tiled_kernel_on_the_host_and_numpy_is_the_specification():
    from mrcnn_np.nn.conv import CONV2D, CONV_TRANSPOSE2D

    x = np.zeros((1, 1, 3, 3), np.float32)
    assert CONV2D.resolve("auto", x) == CONV_TRANSPOSE2D.resolve("auto", x) == "numba"
    assert CONV2D.resolve("numpy", x) == "numpy"
    with pytest.raises(ValueError, match="impl"):
        F.conv2d(x, np.zeros((1, 1, 1, 1), np.float32), impl="cuda")


def test_tiles_cover_every_output_position_once():
    for N, Ho, Wo, K in [(1, 200, 200, 2304), (100, 14, 14, 2304), (3, 7, 5, 1), (2, 1, 1, 10**9), (1, 200, 200, 0), (100, 28, 28, 0), (4, 64, 64, 0)]:
        seen = np.zeros((N, Ho, Wo), int)
        for n0, n1, r0, r1 in conv_kernels._tiles(N, Ho, Wo, K):
            assert n1 - n0 == 1 or (r0, r1) == (0, Ho)  # a band of one image, or whole images
            seen[n0:n1, r0:r1] += 1
        assert (seen == 1).all()
