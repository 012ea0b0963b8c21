"""Exercise 01 -- the backbone: convolution as im2col + matmul, its gradients, a bottleneck.

Fill in the four graded functions below (tasks a-d in README.md) with NumPy only, then run

    mrcnn-np check 01                      # grades this file
    mrcnn-np check 01 --path my_copy.py    # grades your copy
    mrcnn-np check 01 --hint               # one more hint for the first task that does not pass

Conventions (the same as torch): arrays are float64 in the grader; images are (N, C, H, W);
a convolution weight is (C_out, C_in, kh, kw); ``stride`` and ``padding`` are ints used on
both axes; zero padding; no dilation, no groups. The output size along one axis is
(H + 2 * padding - kh) // stride + 1 (torch's formula; likewise Wo with W and kw).

The two helpers (col2im, frozen_batch_norm) are not graded on their own: use them, or not.
"""

import numpy as np  # noqa: F401  (you will need it)


# --- task (a) ----------------------------------------------------------------------------------
def im2col(x, kernel_size, stride, padding):
    """Unfold every receptive field of ``x`` into a column: ``torch.nn.functional.unfold``.

    x: (N, C, H, W); kernel_size: (kh, kw); stride, padding: int.
    Returns cols: (N, C*kh*kw, Ho*Wo) of x's dtype. Column p*Wo + q of image n is the receptive
    field of output pixel (p, q), read from x zero-padded by ``padding`` on each side of H and W:
    its entry at row c*kh*kw + i*kw + j is channel c at kernel tap (i, j), i.e. the padded
    input at row p*stride + i, column q*stride + j. Rows are ordered (channel, kernel row,
    kernel column), the order of ``weight.reshape(C_out, -1)``; columns (output row, output
    column). Kernels may be non-square (1 x 3) and larger than the unpadded input's border.
    """
    raise NotImplementedError("task (a): write im2col")


# --- task (b) ----------------------------------------------------------------------------------
def conv2d_forward(x, weight, bias, stride, padding):
    """A 2-D convolution, ``torch.nn.functional.conv2d`` (a cross-correlation: no kernel flip).

    x: (N, C_in, H, W); weight: (C_out, C_in, kh, kw); bias: (C_out,) or None;
    stride, padding: int.  Returns out: (N, C_out, Ho, Wo), where out[n, o, p, q] is the sum
    over c, i, j of weight[o, c, i, j] times the zero-padded input at (n, c, p*stride + i,
    q*stride + j), plus bias[o] when there is a bias. Built on task (a): one matrix product.
    """
    raise NotImplementedError("task (b): write conv2d_forward")


# --- task (c) ----------------------------------------------------------------------------------
def col2im(cols, x_shape, kernel_size, stride, padding):
    """(helper for task c) The adjoint of im2col: columns folded back onto the input.

    cols: (N, C*kh*kw, Ho*Wo), laid out as im2col's output; x_shape: (N, C, H, W);
    kernel_size: (kh, kw). Returns (N, C, H, W): every input pixel receives the sum of the
    entries that im2col copied from it (none: 0); the padding is dropped.
    """
    raise NotImplementedError("helper for task (c): write col2im (or compute d_x another way)")


def conv2d_backward(grad_out, x, weight, stride, padding):
    """Gradients of a loss L through ``out = conv2d_forward(x, weight, bias, stride, padding)``.

    grad_out: dL/d(out), (N, C_out, Ho, Wo); x: (N, C_in, H, W); weight: (C_out, C_in, kh, kw);
    stride, padding: int.  Returns the tuple ``(d_x, d_weight, d_bias)`` of shapes
    (N, C_in, H, W), (C_out, C_in, kh, kw) and (C_out,): the gradients of
    sum(grad_out * conv2d(x, weight, bias)) with respect to x, weight and bias (they do not
    depend on the bias's value). Input pixels that no window reads (stride 2, no padding)
    get 0. Graded with torch autograd, mrcnn_np's autograd and central differences in float64.
    """
    raise NotImplementedError("task (c): write conv2d_backward")


# --- task (d) ----------------------------------------------------------------------------------
def frozen_batch_norm(x, params, prefix, eps=1e-5):
    """(helper for task d) torchvision's ``FrozenBatchNorm2d``: batch norm with fixed statistics.

    x: (N, C, H, W); params[f"{prefix}.weight"], [".bias"], [".running_mean"],
    [".running_var"]: (C,) each.  Returns (N, C, H, W): per channel, x minus running_mean,
    divided by sqrt(running_var + eps), times weight, plus bias.
    """
    raise NotImplementedError("helper for task (d): write frozen_batch_norm")


def bottleneck_forward(x, params, stride):
    """A ResNet bottleneck block: torchvision's ``models.resnet.Bottleneck`` with frozen BN (eps 1e-5).

    x: (N, C_in, H, W); stride: 1 or 2; params: dict of arrays named as torchvision's state
    dict, for a block of width (planes) P and C_out of 4P. No conv has a bias:
        conv1.weight (P, C_in, 1, 1)   bn1.{weight, bias, running_mean, running_var} (P,)
        conv2.weight (P, P, 3, 3)      bn2.*  (P,)       the 3x3 conv: stride here, padding 1
        conv3.weight (C_out, P, 1, 1)  bn3.*  (C_out,)
    and, only when the shape changes (stride 2 or C_in different from C_out), the projection
    of the identity: downsample.0.weight (C_out, C_in, 1, 1) with the stride, downsample.1.*
    (C_out,). Each conv is followed by its batch norm; the first two by a ReLU; the third's
    result is added to the identity (or its projection) and the sum goes through a ReLU.
    Returns (N, C_out, Ho, Wo), Ho of (H - 1) // stride + 1 ("ResNet v1.5": the 3x3 conv
    strides, not the first 1x1). Use your own conv2d_forward.
    """
    raise NotImplementedError("task (d): write bottleneck_forward")
