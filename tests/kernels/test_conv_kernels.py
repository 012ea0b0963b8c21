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
from mrcnn_np.kernels import threads as kernel_threads
from mrcnn_np.nn import functional as F

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}

# (N, C_in, H, W, C_out, (kh, kw), stride, padding, dilation)
CONV_CASES = [
    (2, 3, 9, 7, 4, (3, 2), (2, 1), (1, 2), (1, 2)),
    (3, 5, 6, 6, 2, (1, 1), 1, 0, 1),            # pointwise: no gather
    (40, 3, 6, 6, 2, (1, 1), 1, 0, 1),           # pointwise on many small maps (RoIs): two groups of images
    (0, 3, 6, 6, 2, (1, 1), 1, 0, 1),            # pointwise, no images
    (2, 3, 5, 5, 2, (1, 1), 2, 0, 1),            # strided 1x1 (a downsample): a pointwise conv of a subsample
    (3, 4, 7, 6, 5, (1, 1), (2, 3), 0, 1),       # ... with unequal strides
    (1, 4, 11, 13, 3, (3, 3), 2, 1, 1),          # a 3x3 / 2 of the backbone
    (5, 4, 4, 4, 3, (3, 3), 1, 1, 1),            # many small images (the mask head)
    (1, 2, 17, 9, 3, (7, 7), 2, 3, 1),           # the stem
    (2, 3, 8, 8, 2, (3, 3), 1, 4, 1),            # padding wider than the kernel: all-zero taps
    (1, 2, 5, 12, 2, (2, 3), (1, 3), (0, 1), (2, 1)),
    (0, 3, 6, 6, 2, (3, 3), 1, 1, 1),            # no images (no RoIs): empty results
    (2, 3, 10, 11, 4, (3, 3), 3, 2, 1),          # stride 3: nine phases
    (1, 2, 9, 10, 3, (4, 3), (2, 3), (3, 0), 1),  # unequal strides, padding wider than the stride
]
TILES = [1 << 20, 50, 7]  # one tile; a few rows or images per tile; one row (or image) per tile
# serial; the tiles shared out over 2 and 3 threads (every conv of 2+ positions); a product's rows shared
# out instead (a conv with fewer tiles than threads: every product of 2+ rows)
THREADS = [(1, "tiles"), (2, "tiles"), (3, "tiles"), (2, "rows"), (3, "rows")]


@pytest.fixture
def tile_values(request):
    before = conv_kernels.TILE_VALUES
    conv_kernels.TILE_VALUES = request.param
    yield request.param
    conv_kernels.TILE_VALUES = before


@pytest.fixture
def threads(request, monkeypatch):
    """``mrcnn_np.kernels.threads.THREADS`` for the test, the work shared out as much as it can be: every
    conv of two or more output positions by tiles (MIN_PARALLEL = 1), or none by tiles and every product
    of two or more rows by rows (MIN_PARALLEL_MACS = ROW_BLOCK = 1), so each tiling above also runs so."""
    count, mode = request.param
    monkeypatch.setattr(kernel_threads, "THREADS", count)
    if mode == "tiles":
        monkeypatch.setattr(conv_kernels, "MIN_PARALLEL", 1)
    else:
        monkeypatch.setattr(conv_kernels, "MIN_PARALLEL", 10**9)
        monkeypatch.setattr(kernel_threads, "MIN_PARALLEL_MACS", 1)
        monkeypatch.setattr(kernel_threads, "ROW_BLOCK", 1)
    yield count
    monkeypatch.undo()
    kernel_threads.cpu_threads()  # THREADS back as it was: BLAS held (or given back) accordingly


def close(got, expected, dtype):
    assert got.shape == expected.shape and got.dtype == expected.dtype
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=RTOL[dtype] * scale)


def close_and_repeated(fast: list, spec, dtype) -> None:
    """The first of ``fast`` (repeated runs' results) is ``spec``'s to rounding; every later one is the first, bit for bit."""
    for got, expected in zip(fast[0], spec, strict=True):
        close(got, expected, dtype)
    for again in fast[1:]:
        for got, first in zip(again, fast[0], strict=True):
            np.testing.assert_array_equal(got, first)


def counting_hand_offs(monkeypatch, *modules) -> list:
    """``in_parallel`` of each of ``modules`` made to record how many chunks each call shares out; returns
    that record (one list for all)."""
    shares = []
    real = kernel_threads.in_parallel
    for module in modules:
        monkeypatch.setattr(module, "in_parallel", lambda work, chunks: shares.append(len(chunks)) or real(work, chunks))
    return shares


def run(op, impl, x, w, b, **kw):
    """(out, d_input, d_weight, d_bias) of ``op`` with ``impl``, for a fixed output gradient."""
    xt, wt, bt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    out = op(xt, wt, bt, impl=impl, **kw)
    g = np.random.default_rng(7).standard_normal(out.shape).astype(x.dtype)
    (out * Tensor(g)).sum().backward()
    return out.data, xt.grad, wt.grad, bt.grad


@pytest.mark.parametrize("threads", THREADS, indirect=True)
@pytest.mark.parametrize("tile_values", TILES, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_tiled_equals_the_specification(case, dtype, tile_values, threads):
    N, C, H, W, C_out, k, stride, padding, dilation = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C_out, C, *k)).astype(dtype)
    b = rng.standard_normal(C_out).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    spec = run(F.conv2d, "numpy", x, w, b, **kw)
    fast = run(F.conv2d, "numba", x, w, b, **kw)
    if tile_values == TILES[0] and threads == 1:
        np.testing.assert_array_equal(fast[0], spec[0])  # the same products, in one tile
    for got, expected in zip(fast, spec, strict=True):
        close(got, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("min_image_macs", "products"), [(1, 40), (1 << 40, 2)])
def test_a_pointwise_conv_of_small_maps_multiplies_image_by_image_when_each_product_is_large(
        min_image_macs, products, dtype, monkeypatch):
    """40 maps of 6x6 (a head's RoIs): with products per image of at least MIN_IMAGE_MACS, one product per
    image (no transposed copies); below it, the images grouped into tiles (here one per thread). Either way the
    forward and backward are the specification's to rounding."""
    monkeypatch.setattr(kernel_threads, "THREADS", 2)
    monkeypatch.setattr(conv_kernels, "MIN_IMAGE_MACS", min_image_macs)
    calls = []
    real = conv_kernels.rows_product
    monkeypatch.setattr(conv_kernels, "rows_product", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    rng = np.random.default_rng(1)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((40, 8, 6, 6), (5, 8, 1, 1), (5,)))
    conv_kernels.conv2d_forward_tiled(x, w, b, (1, 1), (0, 0), (1, 1))
    assert len(calls) == products and all(shape == (8, 36 * 40 // products) for shape in calls)
    spec, fast = run(F.conv2d, "numpy", x, w, b), run(F.conv2d, "numba", x, w, b)
    for got, expected in zip(fast, spec, strict=True):
        close(got, expected, dtype)
    monkeypatch.undo()
    kernel_threads.cpu_threads()


# (N, C_in, H, W, C_out, (kh, kw), stride, padding, output_padding, dilation)
TRANSPOSE_CASES = [
    (3, 4, 5, 5, 2, (2, 2), 2, 0, 0, 1),         # the mask head's 2x2 / 2 deconvolution
    (2, 3, 4, 6, 2, (3, 3), 2, 1, 1, 1),         # overlapping taps, output padding
    (1, 2, 7, 3, 3, (3, 2), (1, 2), (1, 0), (0, 1), (2, 1)),
    (4, 3, 3, 3, 5, (1, 1), 1, 0, 0, 1),
    (0, 4, 5, 5, 2, (2, 2), 2, 0, 0, 1),
]


@pytest.mark.parametrize("threads", THREADS, indirect=True)
@pytest.mark.parametrize("tile_values", TILES, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv_transpose2d_tiled_equals_the_specification(case, dtype, tile_values, threads):
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


@pytest.mark.parametrize("parts", [1, 2, 3, 5])
def test_tiles_for_several_threads_cover_every_output_position_once(parts, monkeypatch):
    monkeypatch.setattr(conv_kernels, "MIN_PARALLEL", 1)
    for N, Ho, Wo, K in [(1, 200, 200, 2304), (55, 14, 14, 288), (3, 7, 5, 1), (1, 1, 1, 9), (1, 64, 64, 0),
                         (4, 64, 64, 0), (0, 5, 5, 9)]:
        tiles = conv_kernels._tiles(N, Ho, Wo, K, parts)
        seen = np.zeros((N, Ho, Wo), int)
        for n0, n1, r0, r1 in tiles:
            assert n1 - n0 == 1 or (r0, r1) == (0, Ho)
            seen[n0:n1, r0:r1] += 1
        assert (seen == 1).all()
        if N * Ho * Wo >= parts:  # enough positions: at least one tile per thread
            assert len(tiles) >= min(parts, N * Ho if N > 1 or K else Ho)
        chunks = conv_kernels._chunks(tiles, Wo, parts)
        assert [t for chunk in chunks for t in chunk] == tiles and len(chunks) <= max(1, parts)
        assert all(chunks) or tiles == []


@pytest.mark.parametrize("parts", [2, 3])
def test_few_bands_give_every_thread_as_many_rows(parts):
    """A map cut into few bands (a strided 3x3 of 128 channels on 100x100 outputs: 3 bands of 36 rows before)
    is cut into a multiple of the threads' count, so each thread's run of bands holds about as many rows."""
    for N, Ho, Wo, K in [(1, 100, 100, 1152), (1, 100, 100, 2304), (1, 400, 400, 147), (1, 50, 50, 2304),
                         (2, 75, 60, 4608)]:
        tiles = conv_kernels._tiles(N, Ho, Wo, K, parts)
        assert all(n1 - n0 == 1 for n0, n1, _, _ in tiles) and len(tiles) % parts == 0, (N, Ho, Wo, K)
        runs = conv_kernels._chunks(tiles, Wo, parts)
        rows = [sum(r1 - r0 for _, _, r0, r1 in run) for run in runs]
        assert len(runs) == parts and max(rows) <= 1.1 * N * Ho / parts, (N, Ho, Wo, K, rows)


@pytest.mark.parametrize("parts", [2, 3, 4])
def test_bands_cover_every_row_once_and_few_are_even(parts):
    """threads.bands: every row of every image once, bands of at most ``rows`` rows. Few of them (under 8 per
    worker): a multiple of ``parts`` where the rows allow, rows differing by at most one, so split's runs of them
    differ by at most one band (a 25-row map in bands of at most 12 rows: 6, 7, 6, 6, not 12, 12, 1, which left
    one of 2 threads 96% of the work)."""
    assert kernel_threads.bands(1, 25, 12, 2) == [(0, 1, 0, 6), (0, 1, 6, 13), (0, 1, 13, 19), (0, 1, 19, 25)]
    assert kernel_threads.bands(1, 25, 12, 1) == [(0, 1, 0, 12), (0, 1, 12, 24), (0, 1, 24, 25)]
    for N in range(1, 4):
        for height in range(1, 40):
            for rows in range(1, height + 1):
                cut = kernel_threads.bands(N, height, rows, parts)
                seen = np.zeros((N, height), int)
                for n0, n1, r0, r1 in cut:
                    assert n1 == n0 + 1 and 0 < r1 - r0 <= rows
                    seen[n0, r0:r1] += 1
                assert (seen == 1).all()
                if N * -(-height // rows) >= 8 * parts:
                    continue
                sizes = [r1 - r0 for _, _, r0, r1 in cut]
                possible = any((N * c) % parts == 0 for c in range(-(-height // rows), height + 1))
                assert len(cut) % parts == 0 or not possible, (N, height, rows, parts)
                assert max(sizes) - min(sizes) <= 1
                runs = kernel_threads.split(cut, sizes, parts)
                totals = [sum(r1 - r0 for _, _, r0, r1 in run) for run in runs]
                assert max(totals) - min(totals) <= max(sizes), (N, height, rows, parts, totals)


@pytest.mark.parametrize("parts", [2, 3])
def test_few_groups_of_images_are_even(parts):
    """threads.groups: every image once, in groups of whole images of at most ``most``; all in one group stay
    one (its products are shared out instead), few are as many for every worker as the images allow (100 RoIs
    in 5 groups of 20 left one of 2 threads 60 of them)."""
    assert [n1 - n0 for n0, n1, _, _ in kernel_threads.groups(100, 20, 14, 2)] == [17, 16, 17, 17, 16, 17]
    assert kernel_threads.groups(0, 1, 14, parts) == []
    for N in range(1, 50):
        for most in range(1, N + 2):
            cut = kernel_threads.groups(N, most, 7, parts)
            assert [n for n0, n1, _, _ in cut for n in range(n0, n1)] == list(range(N))
            assert all((r0, r1) == (0, 7) and 0 < n1 - n0 <= most for n0, n1, r0, r1 in cut)
            assert most < N or len(cut) == 1
            if most < N and len(cut) < 8 * parts:
                sizes = [n1 - n0 for n0, n1, _, _ in cut]
                runs = kernel_threads.split(cut, sizes, parts)
                totals = [sum(n1 - n0 for n0, n1, _, _ in run) for run in runs]
                assert max(totals) - min(totals) <= max(sizes), (N, most, parts, totals)


def test_split_balances_consecutive_runs():
    assert kernel_threads.split([], [], 3) == [[]]
    assert kernel_threads.split(list("abcd"), [1, 1, 1, 1], 2) == [["a", "b"], ["c", "d"]]
    assert kernel_threads.split(list("abcd"), [3, 1, 1, 1], 2) == [["a"], ["b", "c", "d"]]
    assert kernel_threads.split(list("ab"), [1, 1], 5) == [["a"], ["b"]]
    assert kernel_threads.split(list("abc"), [1, 1, 1], 1) == [["a", "b", "c"]]


def test_ranges_cover_whole_blocks():
    assert kernel_threads.ranges(5, 3) == [(0, 2), (2, 4), (4, 5)]
    assert kernel_threads.ranges(5, 8) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert kernel_threads.ranges(144, 2, 16) == [(0, 80), (80, 144)]
    assert kernel_threads.ranges(40, 1, 16) == kernel_threads.ranges(40, 0) == [(0, 40)]
    assert kernel_threads.ranges(0, 3) == [(0, 0)]


def test_a_conv_on_several_threads_shares_its_tiles_and_repeats_bit_for_bit(monkeypatch):
    """The mask head's conv (RoIs of 14x14): its tiles go to two threads, the result is the
    specification's to rounding, and the same call gives the same bits every time."""
    monkeypatch.setattr(kernel_threads, "THREADS", 2)
    shares = counting_hand_offs(monkeypatch, kernel_threads)  # threads.share_out's and rows_product's hand-offs
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((40, 8, 14, 14), (8, 8, 3, 3), (8,)))
    spec = run(F.conv2d, "numpy", x, w, b, padding=1)
    fast = [run(F.conv2d, "numba", x, w, b, padding=1) for _ in range(3)]
    # forward, input gradient (a conv) and weight gradient by tiles, each over both threads (each tile's
    # product then on its own thread: each of threads.rows_product's hand-offs is one chunk)
    assert [s for s in shares if s != 1] == [2] * (3 * len(fast))
    close_and_repeated(fast, spec, np.float32)
    monkeypatch.undo()
    kernel_threads.cpu_threads()


def test_a_small_map_shares_out_the_rows_of_its_products(monkeypatch):
    """A deep layer's conv (one image, a 5x5 map: too few columns to share out by tiles): the forward's
    product (64 rows) and the weight gradient's (144 rows) split their rows over two threads, the input
    gradient's (16 rows: one block) does not; the result is the specification's to rounding and repeats
    bit for bit."""
    monkeypatch.setattr(kernel_threads, "THREADS", 2)
    monkeypatch.setattr(kernel_threads, "MIN_PARALLEL_MACS", 1 << 10)  # this small product counts as big
    shares = counting_hand_offs(monkeypatch, kernel_threads)  # the products' hand-offs (threads.rows_product)
    rng = np.random.default_rng(5)
    x, w, b = (rng.standard_normal(s) for s in ((1, 16, 5, 5), (64, 16, 3, 3), (64,)))
    spec = run(F.conv2d, "numpy", x, w, b, padding=1)
    fast = [run(F.conv2d, "numba", x, w, b, padding=1) for _ in range(2)]
    assert shares == [2, 1, 2] * len(fast)  # forward, input gradient (a conv), weight gradient
    close_and_repeated(fast, spec, np.float64)
    monkeypatch.undo()
    kernel_threads.cpu_threads()


@pytest.mark.parametrize("threads", [2, 3])
def test_large_copies_are_shared_out_and_give_the_same_bits(threads, monkeypatch):
    """With every copy counted as large (threads.MIN_SHARED_COPY = 1), a padded input's copy and a single
    tile's gather are shared out over the threads by planes and channels (threads.shared_copy for a stride-1
    conv, conv._gather_strided for a strided one): the same bits as copied on one thread, forward and
    backward, for a strided 3x3 (one tile: its product's rows shared out too), the stem and a 3x3 of many
    small images; and shared_copy itself is np.copyto."""
    rng = np.random.default_rng(11)
    monkeypatch.setattr(kernel_threads, "THREADS", threads)
    for shape, w_shape, kw in [((1, 16, 9, 9), (32, 16, 3, 3), {"stride": 2, "padding": 1}),
                               ((2, 3, 17, 15), (4, 3, 7, 7), {"stride": 2, "padding": 3}),
                               ((6, 5, 6, 6), (4, 5, 3, 3), {"padding": 1})]:
        x, w, b = (rng.standard_normal(s) for s in (shape, w_shape, (w_shape[0],)))
        monkeypatch.setattr(kernel_threads, "MIN_SHARED_COPY", 1 << 40)
        alone = run(F.conv2d, "numba", x, w, b, **kw)
        monkeypatch.setattr(kernel_threads, "MIN_SHARED_COPY", 1)
        shares = counting_hand_offs(monkeypatch, kernel_threads, conv_kernels)
        shared = run(F.conv2d, "numba", x, w, b, **kw)
        assert threads in shares, shape  # some copy was shared out over every thread
        for got, expected in zip(shared, alone, strict=True):
            np.testing.assert_array_equal(got, expected)
    source = rng.standard_normal((5, 4, 3)).transpose(2, 0, 1)  # (3, 5, 4), not contiguous
    target = np.zeros((3, 7, 6))[:, 1:6, 2:6]
    kernel_threads.shared_copy(target, source, threads)
    np.testing.assert_array_equal(target, source)
    monkeypatch.undo()
    kernel_threads.cpu_threads()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_positive_int(bad, monkeypatch):
    monkeypatch.setattr(kernel_threads, "THREADS", bad)
    with pytest.raises(ValueError, match="THREADS"):
        kernel_threads.cpu_threads()


def test_blas_runs_on_one_thread_while_convs_share_the_cores_and_gets_its_own_back():
    import threadpoolctl

    def blas_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]

    before, setting = blas_threads(), kernel_threads.THREADS
    try:
        kernel_threads.THREADS = 1
        assert kernel_threads.cpu_threads() == 1
        own = blas_threads()
        kernel_threads.THREADS = 3
        assert kernel_threads.cpu_threads() == 3 and set(blas_threads()) == {1}
        kernel_threads.THREADS = 1
        assert kernel_threads.cpu_threads() == 1 and blas_threads() == own
    finally:
        kernel_threads.THREADS = setting
        kernel_threads.cpu_threads()
    assert blas_threads() == before
