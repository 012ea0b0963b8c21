"""Exercise 01 -- the backbone: convolution as im2col + matmul, its gradients, a bottleneck.

Fill in the four graded functions below (tasks a-d in README.md) with NumPy only, then run

    mrcnn-np check 01                      # grades this file
    mrcnn-np check 01 --path my_copy.py    # grades your copy

Conventions (the same as torch): arrays are float64 in the grader; images are (N, C, H, W);
a convolution weight is (C_out, C_in, kh, kw); ``stride`` and ``padding`` are ints used on
both axes; zero padding; no dilation, no groups. Output size along one axis:

    Ho = (H + 2 * padding - kh) // stride + 1

The two helpers (col2im, frozen_batch_norm) are not graded on their own: use them, or not.
"""

import numpy as np  # noqa: F401  (you will need it)


# --- task (a) ----------------------------------------------------------------------------------
def im2col(x, kernel_size, stride, padding):
    """Unfold every receptive field of ``x`` into a column.

    x: (N, C, H, W); kernel_size: (kh, kw); stride, padding: int.
    Returns cols: (N, C*kh*kw, Ho*Wo), where ``cols[n, c*kh*kw + i*kw + j, p*Wo + q]`` is the
    zero-padded input ``x_pad[n, c, p*stride + i, q*stride + j]``: row order (channel, kernel
    row i, kernel column j), the order of ``weight.reshape(C_out, -1)``; column order
    (output row p, output column q).
    """
    raise NotImplementedError("task (a): write im2col")


# --- task (b) ----------------------------------------------------------------------------------
def conv2d_forward(x, weight, bias, stride, padding):
    """A 2-D convolution (torch's ``conv2d``, a cross-correlation) as im2col + one matmul.

    x: (N, C_in, H, W); weight: (C_out, C_in, kh, kw); bias: (C_out,) or None;
    stride, padding: int.  Returns out: (N, C_out, Ho, Wo) with
    ``out[n, o] = sum over c, i, j of weight[o, c, i, j] * x_pad[n, c, p*stride + i, q*stride + j]
    (+ bias[o])``.
    """
    raise NotImplementedError("task (b): write conv2d_forward")


# --- task (c) ----------------------------------------------------------------------------------
def col2im(cols, x_shape, kernel_size, stride, padding):
    """(helper for task c) The adjoint of im2col: fold columns back onto the input, adding
    the values that land on the same pixel, and drop the padding.

    cols: (N, C*kh*kw, Ho*Wo); x_shape: (N, C, H, W); kernel_size: (kh, kw).
    Returns (N, C, H, W).
    """
    raise NotImplementedError("helper for task (c): write col2im (or compute d_x another way)")


def conv2d_backward(grad_out, x, weight, stride, padding):
    """Gradients of a loss L through ``out = conv2d_forward(x, weight, bias, stride, padding)``.

    grad_out: dL/d(out), (N, C_out, Ho, Wo); x: (N, C_in, H, W); weight: (C_out, C_in, kh, kw);
    stride, padding: int.  Returns the tuple ``(d_x, d_weight, d_bias)`` of shapes
    (N, C_in, H, W), (C_out, C_in, kh, kw) and (C_out,).
    """
    raise NotImplementedError("task (c): write conv2d_backward")


# --- task (d) ----------------------------------------------------------------------------------
def frozen_batch_norm(x, params, prefix, eps=1e-5):
    """(helper for task d) torchvision's FrozenBatchNorm2d with fixed statistics:
    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel.

    x: (N, C, H, W); params[f"{prefix}.weight"], [".bias"], [".running_mean"],
    [".running_var"]: (C,) each.  Returns (N, C, H, W).
    """
    raise NotImplementedError("helper for task (d): write frozen_batch_norm")


def bottleneck_forward(x, params, stride):
    """A ResNet bottleneck block (torchvision's ``Bottleneck``, frozen BN, eps 1e-5).

    x: (N, C_in, H, W); stride: 1 or 2; params: dict of arrays named as torchvision's
    state dict, with planes P and C_out = 4P:
        conv1.weight (P, C_in, 1, 1)   bn1.{weight, bias, running_mean, running_var} (P,)
        conv2.weight (P, P, 3, 3)      bn2.*  (P,)       <- stride here, padding 1
        conv3.weight (C_out, P, 1, 1)  bn3.*  (C_out,)
    and, only when the shape changes, the projection of the identity:
        downsample.0.weight (C_out, C_in, 1, 1)  (stride here)  downsample.1.*  (C_out,)
    Returns relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + identity):
    (N, C_out, Ho, Wo), Ho = (H - 1) // stride + 1. Use your own conv2d_forward.
    """
    raise NotImplementedError("task (d): write bottleneck_forward")
