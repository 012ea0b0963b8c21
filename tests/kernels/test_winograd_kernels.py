"""Winograd's F(2x2, 3x3) (:mod:`mrcnn_np.kernels.winograd`) against the convolution's specification
(:func:`mrcnn_np.nn.conv.conv2d_forward`, im2col): float32 and float64, odd heights and widths (tiles cut
at the output's edge), paddings 0 to 2, a 1x1 input, many small images (a mask head's RoIs), no images,
with bias, residual and ReLU; on one thread, with the tiles shared out over 2 and 3 threads (small
tiles: bands of rows and groups of images), and with the 16 products shared out instead. The
transforms round differently from im2col, so results agree to the tiled convolution's tolerances
(float64: 1e-12 of the largest value; float32: 1e-5) and a run repeats bit for bit. Inference
(``no_grad``) takes this path where :func:`~mrcnn_np.kernels.winograd.applies`; training does not."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np import no_grad
from mrcnn_np.autograd import Tensor
from mrcnn_np.kernels import conv as conv_kernels
from mrcnn_np.kernels import threads as kernel_threads
from mrcnn_np.kernels import winograd
from mrcnn_np.nn import Conv2d, FrozenBatchNorm2d
from mrcnn_np.nn import functional as F
from mrcnn_np.nn.conv import conv2d_forward
from mrcnn_np.nn.fused import conv_norm, folded, fusion

from .test_conv_kernels import DTYPES, close, close_and_repeated, counting_hand_offs

# (N, C_in, H, W, C_out, padding)
CASES = [
    (1, 3, 9, 7, 4, (1, 1)),      # odd output: the last row and column of tiles cut
    (2, 5, 8, 8, 3, (0, 0)),      # no padding, even output
    (3, 4, 5, 6, 2, (2, 1)),      # wider padding, different per axis
    (1, 2, 1, 1, 3, (1, 1)),      # a 1x1 input: one output, one tile
    (40, 3, 4, 4, 5, (1, 1)),     # many small images (RoIs): groups of whole images per tile
    (2, 6, 3, 3, 2, (0, 0)),      # a 1x1 output
    (0, 3, 6, 6, 2, (1, 1)),      # no images (no RoIs): an empty result
]
# (threads, mode): serial; tiles shared out over 2 and 3 threads; the 16 products shared out instead
THREADS = [(1, "tiles"), (2, "tiles"), (3, "tiles"), (2, "products"), (3, "products")]


@pytest.fixture(params=THREADS, ids=[f"{n}-{mode}" for n, mode in THREADS])
def threads(request, monkeypatch):
    """``THREADS`` for the test, with tiles of a few Winograd tiles (so bands of rows and groups of images
    occur), shared out over the threads ("tiles") or never, the products shared out instead ("products")."""
    count, mode = request.param
    monkeypatch.setattr(kernel_threads, "THREADS", count)
    monkeypatch.setattr(winograd, "TILE_VALUES", 1)
    monkeypatch.setattr(winograd, "MIN_TILES", 3)
    monkeypatch.setattr(winograd, "MIN_PARALLEL", 1 if mode == "tiles" else 10**9)
    yield count, mode
    monkeypatch.undo()
    kernel_threads.cpu_threads()  # THREADS back as it was: BLAS held (or given back) accordingly


def data(case, dtype, seed=0):
    N, C, H, W, C_out, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C_out, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(C_out).astype(dtype)
    return x, w, b, padding


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_winograd_equals_the_specification_and_repeats(case, dtype, threads):
    x, w, b, padding = data(case, dtype)
    spec = conv2d_forward(x, w, b, 1, padding, 1)[0]
    runs = [[winograd.conv3x3_winograd(x, w, b, padding)] for _ in range(2)]
    close_and_repeated(runs, [spec], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [CASES[0], CASES[4]])
def test_the_epilogue_is_bias_then_residual_then_relu(case, dtype, threads):
    x, w, b, padding = data(case, dtype)
    spec = conv2d_forward(x, w, b, 1, padding, 1)[0]
    residual = np.random.default_rng(1).standard_normal(spec.shape).astype(dtype)
    got = winograd.conv3x3_winograd(x, w, b, padding, relu=True, residual=residual)
    close(got, np.maximum(spec + residual, 0), dtype)
    assert (got >= 0).all() and (got == 0).any()
    close(winograd.conv3x3_winograd(x, w, None, padding), conv2d_forward(x, w, None, 1, padding, 1)[0], dtype)


def test_shares_out_tiles_or_products(monkeypatch, threads):
    """With more threads, a conv of several tiles hands each thread a run of them; in "products" mode it keeps
    its tiles on the caller's thread and shares out each tile's 16 products."""
    count, mode = threads
    shares = counting_hand_offs(monkeypatch, kernel_threads, winograd)  # threads.share_out's, the products'
    x, w, b, padding = data(CASES[4], np.float32)
    winograd.conv3x3_winograd(x, w, b, padding)
    if count == 1:
        assert set(shares) == {1}
    elif mode == "tiles":
        assert shares[0] == count  # the first hand-off: the runs of tiles
    else:
        assert shares[0] == count and len(shares) > 1  # every tile's products (16 over the threads)


@pytest.mark.parametrize("parts", [2, 3])
def test_few_bands_give_every_thread_as_many_tile_rows(parts):
    """A map cut into few bands of Winograd tiles is cut as evenly as its rows allow (threads.bands): a 3x3 of
    256 channels on 50x50 (25 rows of tiles) was cut into bands of 12, 12 and 1 rows, and one of 2 threads ran
    600 of its 625 tiles."""
    for N, size, C in [(1, 50, 256), (1, 100, 128), (1, 200, 64), (1, 100, 256), (2, 60, 512)]:
        th = tw = size // 2
        tiles = winograd._tiles(N, th, tw, 16 * C, parts)
        runs = kernel_threads.split(tiles, [(n1 - n0) * (t1 - t0) for n0, n1, t0, t1 in tiles], parts)
        rows = [sum(t1 - t0 for _, _, t0, t1 in run) for run in runs]
        assert len(runs) == parts and max(rows) - min(rows) <= max(t1 - t0 for _, _, t0, t1 in tiles), rows
        assert max(rows) <= 1.1 * N * th / parts + 1, (N, size, C, rows)


@pytest.mark.parametrize("count", [2, 3])
def test_a_shared_out_padded_copy_gives_the_same_bits(count, monkeypatch):
    """The input's zero-padded copy, counted as large (threads.MIN_SHARED_COPY = 1), is shared out over the
    threads by planes (threads.shared_copy): the same bits as copied on one thread."""
    monkeypatch.setattr(kernel_threads, "THREADS", count)
    x, w, b, padding = data(CASES[4], np.float32)
    monkeypatch.setattr(kernel_threads, "MIN_SHARED_COPY", 1 << 40)
    alone = winograd.conv3x3_winograd(x, w, b, padding)
    monkeypatch.setattr(kernel_threads, "MIN_SHARED_COPY", 1)
    shares = counting_hand_offs(monkeypatch, kernel_threads, winograd)
    np.testing.assert_array_equal(winograd.conv3x3_winograd(x, w, b, padding), alone)
    assert shares[0] == count  # the first hand-off: the padded copy's planes
    monkeypatch.undo()
    kernel_threads.cpu_threads()


def test_nan_in_the_input_reaches_the_outputs_it_touches():
    x, w, b, padding = data(CASES[0], np.float32)
    x[0, 0, 4, 3] = np.nan
    got = winograd.conv3x3_winograd(x, w, b, padding, relu=True)
    spec = np.maximum(conv2d_forward(x, w, b, 1, padding, 1)[0], 0)
    assert np.isnan(got[0, :, 3:6, 2:5]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(spec))


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_transform_is_G_g_G_transposed(dtype):
    w = np.random.default_rng(2).standard_normal((5, 7, 3, 3)).astype(dtype)
    # U[4a + b, o, c] = sum_ij G[a, i] g[o, c, i, j] G[b, j], in float64, rounded once
    expected = np.einsum("ai,ocij,bj->aboc", winograd.G, w.astype(np.float64), winograd.G).reshape(16, 5, 7)
    got = winograd.weight_transform(w)
    assert got.dtype == dtype and got.shape == (16, 5, 7)
    if dtype == np.float32:  # float64 sums in another order, then the one rounding: the same float32
        np.testing.assert_array_equal(got, expected.astype(dtype))
    else:  # float64 sums in another order: a few units of the last place
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15 * np.abs(expected).max())


def test_applies_to_wide_large_3x3_stride_1_convs_only():
    C, P = winograd.MIN_CHANNELS, winograd.MIN_POSITIONS
    assert winograd.applies((C, C, 3, 3), (1, 1), (1, 1), P)
    assert not winograd.applies((C, C, 3, 3), (2, 2), (1, 1), P)       # strided
    assert not winograd.applies((C, C, 3, 3), (1, 1), (2, 2), P)       # dilated
    assert not winograd.applies((C, C, 1, 1), (1, 1), (1, 1), P)       # 1x1
    assert not winograd.applies((C, C - 1, 3, 3), (1, 1), (1, 1), P)   # too narrow
    assert not winograd.applies((C, C, 3, 3), (1, 1), (1, 1), P - 1)   # too small a map


def test_inference_takes_winograd_and_training_the_tiled_conv(monkeypatch):
    """``F.conv2d`` outside the tape is Winograd's where it applies (the same bits as calling it); on the tape
    (training) it is the tiled im2col conv, unchanged, so training's numbers do not move."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_POSITIONS", 1)
    x, w, b, padding = data(CASES[0], np.float32)
    with no_grad():
        inferred = F.conv2d(Tensor(x), Tensor(w), Tensor(b), padding=padding, impl="numba").data
    np.testing.assert_array_equal(inferred, winograd.conv3x3_winograd(x, w, b, padding))
    trained = F.conv2d(Tensor(x), Tensor(w, requires_grad=True), Tensor(b), padding=padding, impl="numba").data
    tiled = conv_kernels.conv2d_forward_tiled(x, w, b, (1, 1), padding, (1, 1))
    np.testing.assert_array_equal(trained, tiled)
    assert not np.array_equal(inferred, tiled)  # a different algorithm: the last bits differ somewhere
    with no_grad():  # the specification stays im2col
        spec = F.conv2d(Tensor(x), Tensor(w), Tensor(b), padding=padding, impl="numpy").data
    np.testing.assert_array_equal(spec, conv2d_forward(x, w, b, 1, padding, 1)[0])
    with no_grad(), fusion(False):  # the specification's arithmetic asked for: the tiled im2col conv
        separate = F.conv2d(Tensor(x), Tensor(w), Tensor(b), padding=padding, impl="numba").data
    np.testing.assert_array_equal(separate, tiled)


@pytest.mark.parametrize("with_norm", [True, False], ids=["conv+norm", "conv"])
def test_folded_inference_keeps_the_transform_until_the_weights_change(monkeypatch, with_norm):
    """``conv_norm`` at inference transforms a folded 3x3 weight once and keeps it with the folded result;
    new weights refold, and so transform again -- also without a norm, where the folded weight is the conv's
    own array and changes in place (the FPN's 3x3s: a stale transform there was caught by chapter 1)."""
    monkeypatch.setattr(winograd, "MIN_POSITIONS", 1)
    rng = np.random.default_rng(4)
    conv, norm = Conv2d(32, 32, 3, padding=1, rng=rng), FrozenBatchNorm2d(32) if with_norm else None
    if with_norm:
        norm.running_var[...] = rng.uniform(0.5, 2.0, 32)
    calls = []
    real = winograd.weight_transform
    monkeypatch.setattr(winograd, "weight_transform", lambda w: calls.append(w) or real(w))
    x = Tensor(rng.standard_normal((2, 32, 6, 5)).astype(np.float32))
    with no_grad():
        first, again = conv_norm(conv, norm, x, relu=True).data, conv_norm(conv, norm, x, relu=True).data
        assert len(calls) == 1 and calls[0] is folded(conv, norm)[0]
        np.testing.assert_array_equal(first, again)
        weight, bias = folded(conv, norm)
        expected = winograd.conv3x3_winograd(x.data, weight, bias, (1, 1), relu=True, U=real(weight))
        np.testing.assert_array_equal(first, expected)
        conv.weight.data[...] *= 2  # new weights: refolded, transformed again
        doubled = conv_norm(conv, norm, x).data
    assert len(calls) == 2
    with no_grad(), fusion(False):
        close(doubled, (norm(conv(x)) if with_norm else conv(x)).data, np.float32)
