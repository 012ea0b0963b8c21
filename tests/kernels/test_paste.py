"""The mask paste kernels (:mod:`mrcnn_np.kernels.paste`) against their specification,
:func:`mrcnn_np.model.transform.paste_masks_numpy` (one ``F.interpolate`` per mask), bit for bit
in float32 and float64: random masks and integer boxes inside, across and outside the image,
1-pixel boxes, empty (x2 < x1) boxes, boxes larger than the image, no masks at all.

The numba CPU kernel runs in the main pytest process. The numba.cuda kernel is marked
``cudasim``: it runs under the simulator (``NUMBA_ENABLE_CUDASIM=1``, scripts/test.sh's second
pytest run) on NumPy arrays, and on CuPy-like arrays through the stand-in hand-off of
test_cuda_handoff.py (one launch, nothing read back, no host data copied over); on a machine
with a GPU the same tests run on the device. test_ptx.py compiles the kernel for sm_90.
"""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np import backend
from mrcnn_np.kernels import paste as paste_kernels
from mrcnn_np.model.transform import PASTE, paste_masks_in_image, paste_masks_numpy
from tests.kernels.test_cuda_handoff import handoff  # noqa: F401  (the fixture)

DTYPES = [np.float32, np.float64]


def assert_bitwise(got, expected):
    """Same kind of array, shape and dtype, and the same bits in every element (``-0.0 != 0.0``)."""
    assert type(got) is type(expected) is np.ndarray
    assert got.shape == expected.shape and got.dtype == expected.dtype
    bits = f"u{expected.dtype.itemsize}"
    differ = np.flatnonzero(got.view(bits) != expected.view(bits))
    assert differ.size == 0, (f"{differ.size} of {got.size} elements differ, first at "
                              f"{np.unravel_index(differ[0], got.shape)}: {got.flat[differ[0]]!r} vs "
                              f"{expected.flat[differ[0]]!r}")


def int_boxes(rng, R, im_h, im_w):
    """(R, 4) int64 boxes of every kind the paste meets: random (mostly overlapping the image),
    then in turn 1-pixel, empty (x2 < x1 or y2 < y1), larger than the image, fully outside."""
    x1 = rng.integers(-im_w // 2, im_w, R)
    y1 = rng.integers(-im_h // 2, im_h, R)
    x2 = x1 + rng.integers(0, im_w, R)
    y2 = y1 + rng.integers(0, im_h, R)
    boxes = np.stack([x1, y1, x2, y2], axis=1)
    for r in range(R):
        kind = r % 6
        if kind == 1:  # one pixel
            boxes[r, 2:] = boxes[r, :2]
        elif kind == 2:  # empty: the spec resizes to 1 pixel, pastes nothing
            boxes[r, 2] = boxes[r, 0] - rng.integers(1, 4)
        elif kind == 3:  # larger than the image on every side
            boxes[r] = [-rng.integers(1, im_w), -rng.integers(1, im_h), im_w + rng.integers(0, im_w),
                        im_h + rng.integers(0, im_h)]
        elif kind == 4:  # outside, right or below
            boxes[r, [0, 2]] = im_w + rng.integers(0, 5) + np.array([0, 3])
    return boxes.astype(np.int64)


def case(seed, R, dtype, mask_shape=(30, 30), image=(23, 37)):
    rng = np.random.default_rng(seed)
    masks = rng.uniform(0, 1, (R, *mask_shape)).astype(dtype)
    return masks, int_boxes(rng, R, *image), *image


# (seed, R, mask shape, image (H, W)); images at most 32 wide, one block column (the simulator is slow)
CASES = [(0, 8, (30, 30), (21, 30)), (1, 7, (30, 30), (29, 13)), (2, 6, (9, 5), (17, 19)),
         (3, 5, (1, 1), (8, 12)), (4, 0, (30, 30), (23, 37))]
IDS = ["R8", "tall-image", "small-nonsquare-mask", "1x1-mask", "R0"]


# --- numba, CPU (main process) ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,R,mask_shape,image", CASES, ids=IDS)
def test_paste_numba_equals_numpy_bitwise(seed, R, mask_shape, image, dtype):
    masks, boxes, im_h, im_w = case(seed, R, dtype, mask_shape, image)
    assert_bitwise(paste_kernels.paste_masks_numba(masks, boxes, im_h, im_w), paste_masks_numpy(masks, boxes, im_h, im_w))


@pytest.mark.parametrize("dtype", DTYPES)
def test_paste_numba_on_model_sized_inputs(dtype):
    """28x28 masks (30x30 padded) into an 800 x 1216 image, boxes of 1 to 900 pixels."""
    rng = np.random.default_rng(7)
    masks = np.pad(rng.uniform(0, 1, (20, 28, 28)), ((0, 0), (1, 1), (1, 1))).astype(dtype)
    boxes = int_boxes(rng, 20, 800, 1216)
    assert_bitwise(paste_kernels.paste_masks_numba(masks, boxes, 800, 1216), paste_masks_numpy(masks, boxes, 800, 1216))


def test_auto_is_the_numba_kernel_on_the_host():
    """Bit-identical to the specification, so the host's ``"auto"`` may take it (the model's
    outputs do not change)."""
    masks, boxes, _, _ = case(0, 3, np.float32)
    assert PASTE.names == ("numpy", "numba", "cuda")
    assert PASTE.resolve("auto", masks, boxes) == "numba"


@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_paste_masks_in_image_auto_equals_numpy(dtype, padding):
    """The public function (padding, box expansion, truncation) on float boxes, (R, 1, M, M) masks."""
    rng = np.random.default_rng(11 + padding)
    xy = rng.uniform(-20, 70, (9, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 60, (9, 2))], axis=1).astype(dtype)
    boxes[0] = [30.2, 20.6, 30.5, 20.8]  # under a pixel
    boxes[1] = [-25.5, -18.2, 101.3, 77.6]  # larger than the image
    masks = rng.uniform(0, 1, (9, 1, 28, 28)).astype(dtype)
    got = paste_masks_in_image(masks, boxes, (60, 80), padding=padding)
    assert got.shape == (9, 1, 60, 80)
    assert_bitwise(got, paste_masks_in_image(masks, boxes, (60, 80), padding=padding, impl="numpy"))
    empty = paste_masks_in_image(masks[:0], boxes[:0], (60, 80), padding=padding)
    assert empty.shape == (0, 1, 60, 80) and empty.dtype == dtype


# --- numba.cuda (the simulator, or a GPU) --------------------------------------------------------
@pytest.mark.cudasim
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,R,mask_shape,image", CASES, ids=IDS)
def test_paste_cuda_equals_numpy_bitwise(seed, R, mask_shape, image, dtype):
    masks, boxes, im_h, im_w = case(seed, R, dtype, mask_shape, image)
    assert_bitwise(paste_kernels.paste_masks_cuda(masks, boxes, im_h, im_w), paste_masks_numpy(masks, boxes, im_h, im_w))


@pytest.mark.cudasim
def test_paste_cuda_strides_over_masks_past_the_grid(monkeypatch):
    """More masks than blocks along z: each block column walks masks z, z + gridDim.z, ..."""
    monkeypatch.setattr(paste_kernels, "MAX_GRID_Z", 2)
    masks, boxes, im_h, im_w = case(5, 5, np.float32, image=(9, 11))
    assert_bitwise(paste_kernels.paste_masks_cuda(masks, boxes, im_h, im_w), paste_masks_numpy(masks, boxes, im_h, im_w))


@pytest.mark.cudasim
@pytest.mark.parametrize("dtype", DTYPES)
def test_paste_on_cupy_arrays_is_one_launch_without_a_sync(handoff, dtype):  # noqa: F811
    """The whole public function on device arrays, ``impl="cuda"``: the boxes are grown and
    truncated on the device and go to the kernel as they are -- no host read, no host data copied
    over, one launch, the output CuPy allocated (every element written: the stand-in fills it with
    NaN first)."""
    cp = handoff.cp
    rng = np.random.default_rng(3)
    xy = rng.uniform(-10, 25, (6, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 30, (6, 2))], axis=1).astype(dtype)
    masks = rng.uniform(0, 1, (6, 1, 28, 28)).astype(dtype)
    out = handoff.run(paste_masks_in_image, cp.asarray(masks), cp.asarray(boxes), (19, 26), 1, "cuda")
    assert backend.is_cupy_array(out) and out.shape == (6, 1, 19, 26)
    handoff.check_launches(1)
    assert handoff.host_reads == 0
    expected = paste_masks_in_image(masks, boxes, (19, 26), impl="numpy")
    assert_bitwise(out.get(), expected)

