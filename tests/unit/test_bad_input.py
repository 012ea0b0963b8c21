"""Wrong ndim, shape or dtype give errors that name the expected and the received shape."""

from __future__ import annotations

import numpy as np
import pytest

import mrcnn_np.nn.functional as F
from mrcnn_np import nn

X = np.zeros((1, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)


def test_conv2d_wrong_ndim():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got shape \(3, 8, 8\)"):
        F.conv2d(X[0], W)
    with pytest.raises(ValueError, match=r"expected weight of shape \(C_out, C_in, kh, kw\), got shape \(4, 27\)"):
        F.conv2d(X, W.reshape(4, 27))


def test_conv2d_channel_mismatch():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got shape \(1, 5, 8, 8\)"):
        F.conv2d(np.zeros((1, 5, 8, 8), np.float32), W)


def test_conv2d_bias_shape():
    with pytest.raises(ValueError, match=r"expected bias of shape \(4,\), got shape \(3,\)"):
        F.conv2d(X, W, np.zeros(3, np.float32))


def test_conv2d_dtypes():
    with pytest.raises(TypeError, match="input float64, weight float32"):
        F.conv2d(X.astype(np.float64), W)
    with pytest.raises(TypeError, match="must be float32 or float64, got dtype uint8"):
        F.conv2d(X.astype(np.uint8), W.astype(np.uint8))


def test_conv2d_input_smaller_than_kernel():
    with pytest.raises(ValueError, match=r"too small for kernel \(3, 3\).*\(1, 3, 2, 8\)"):
        F.conv2d(np.zeros((1, 3, 2, 8), np.float32), W)


def test_conv_transpose2d_checks():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got shape \(1, 4, 5, 5\)"):
        F.conv_transpose2d(np.zeros((1, 4, 5, 5), np.float32), np.zeros((3, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(np.zeros((1, 3, 5, 5), np.float32), np.zeros((3, 2, 2, 2), np.float32), stride=2,
                           output_padding=2)


def test_linear_checks():
    w = np.zeros((5, 7), np.float32)
    with pytest.raises(ValueError, match=r"expected input of shape \(\*, 7\), got shape \(4, 6\)"):
        F.linear(np.zeros((4, 6), np.float32), w)
    with pytest.raises(ValueError, match=r"expected weight of shape \(out_features, in_features\), got shape \(35,\)"):
        F.linear(np.zeros((4, 7), np.float32), w.reshape(-1))
    with pytest.raises(TypeError, match="input float64, weight float32"):
        F.linear(np.zeros((4, 7)), w)
    with pytest.raises(TypeError, match="int64"):
        F.linear(np.zeros((4, 7), np.int64), w.astype(np.int64))


def test_modules_raise_the_same_errors():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        nn.Conv2d(3, 4, 3)(np.zeros((2, 4, 9, 9), np.float32))
    with pytest.raises(ValueError, match=r"\(\*, 10\)"):
        nn.Linear(10, 2)(np.zeros((2, 9), np.float32))


def test_losses_check_shapes_and_labels():
    with pytest.raises(ValueError, match=r"target of shape \(3, 2\).*got \(3,\)"):
        F.smooth_l1_loss(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"target 7 is outside \[0, 4\)"):
        F.cross_entropy(np.zeros((2, 4)), np.array([1, 7]))
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(np.zeros((2, 4)), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.l1_loss(np.zeros(2), np.zeros(2), reduction="avg")


def test_other_layers_check_input():
    with pytest.raises(ValueError, match=r"max_pool2d: expected input of shape \(N, C, H, W\)"):
        F.max_pool2d(np.zeros((3, 4, 4)), 2)
    with pytest.raises(ValueError, match="padding"):
        F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, padding=2)
    with pytest.raises(ValueError, match=r"running_var of shape \(3,\), got shape \(4,\)"):
        F.frozen_batch_norm2d(np.zeros((1, 3, 2, 2)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(np.zeros((1, 3)), None, None, training=True)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="mode must be"):
        F.interpolate(np.zeros((1, 1, 4, 4)), size=8, mode="bicubic")


# --- images given to the model ------------------------------------------------------------
class FakeTorchTensor:
    """Stands in for a torch tensor (torch is not needed): its module is ``torch``."""

    __module__ = "torch"

    def __init__(self, array, device="cpu"):
        self.array, self.device = array, type("device", (), {"type": device})()
        self.shape, self.dtype = array.shape, "torch.float32"

    def detach(self):
        return self

    def numpy(self):
        return self.array


@pytest.fixture(scope="module")
def model():
    from mrcnn_np.config import tiny
    from mrcnn_np.model.mask_rcnn import MaskRCNN

    return MaskRCNN(tiny(), rng=0).eval()


IMAGE = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)


@pytest.mark.parametrize(("images", "exc", "match"), [
    (None, TypeError, "images must be a list of arrays, got NoneType"),
    (IMAGE, TypeError, r"images must be a list of arrays; got one array of shape \(40, 50, 3\): pass \[image\]"),
    (FakeTorchTensor(IMAGE), TypeError, r"got one array of shape \(40, 50, 3\): pass \[image\]"),
    ([IMAGE, None], TypeError, r"images\[1\] must be an array of shape \(H, W, 3\) or \(3, H, W\), got NoneType"),
    ([IMAGE.tolist()], TypeError, r"images\[0\] must be an array .* got list"),
    ([FakeTorchTensor(IMAGE, "cuda")], TypeError, r"images\[0\] is a torch tensor on cuda.*\.cpu\(\)"),
    ([], ValueError, "empty list of images"),
    ([IMAGE * 255], ValueError, r"images\[0\] is a float image with values in \[.*, 25\d.*\], expected \[0, 1\]: "
                                r"divide it by 255 or pass it as uint8"),
    ([IMAGE - 0.5], ValueError, r"images\[0\] is a float image .* clip it to \[0, 1\]"),
    ([IMAGE, np.zeros((1, 5000, 3), np.uint8)], ValueError,
     r"images\[1\] of 1x5000 pixels is too thin: .* at least 14 pixels"),
    ([np.zeros((5000, 2, 3), np.float32)], ValueError, r"images\[0\] of 5000x2 pixels is too thin"),
    ([IMAGE.astype(np.int32)], TypeError, r"images\[0\] must be float in \[0, 1\] or uint8, got int32"),
    ([IMAGE[..., :2]], ValueError, r"expected images\[0\] of shape \(H, W, 3\) or \(3, H, W\), got \(40, 50, 2\)"),
])
def test_bad_images_are_named(model, images, exc, match):
    with pytest.raises(exc, match=match):
        model(images)


def test_images_as_torch_tensors_and_within_the_rounding_tolerance_are_accepted(model):
    (ref,) = model.predict([IMAGE])
    (got,) = model.predict([FakeTorchTensor(IMAGE.transpose(2, 0, 1))])
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key])
    nudged = IMAGE.copy()
    nudged[0, 0] = (1 + 5e-4, -5e-4, 1.0)  # rounding noise, inside the 1e-3 tolerance
    assert model.predict([nudged])[0]["boxes"].shape[1] == 4
