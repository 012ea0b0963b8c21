"""2-D convolution and transposed convolution as im2col + matrix multiply.

A convolution with weight ``(C_out, C_in, kh, kw)`` applied to ``(N, C_in, H, W)`` is one
matrix product once every receptive field is unfolded into a column (*im2col*)::

    cols = im2col(x)                         # (N, C_in*kh*kw, Ho*Wo)
    out  = weight.reshape(C_out, -1) @ cols  # (N, C_out, Ho*Wo) -> reshape (N, C_out, Ho, Wo)

The backward pass is the same product transposed, and *col2im* folds the column gradients
back onto the (overlapping) input positions they came from. A transposed convolution is
exactly that backward pass used as a forward pass: ``col2im(weight^T @ x)``.

The unfolding is a strided *view* (no copy until the reshape), and the product goes to
BLAS, which is what makes this readable form fast: see ``benchmarks/bench_layers.py``.

Torch references: ``torch.nn.functional.conv2d`` / ``conv_transpose2d``.
"""

from __future__ import annotations

from ..autograd import _data, apply, needs_grad
from ..backend import get_array_module
from .checks import check_float, check_same_dtype, check_shape, pair


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one axis (torch's formula, floor division)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """Unfold receptive fields into columns: (N, C, H, W) -> (N, C*kh*kw, Ho*Wo).

    Row ``c*kh*kw + i*kw + j`` of a column holds input channel ``c`` at kernel tap
    ``(i, j)``, the order of ``weight.reshape(C_out, -1)``.
    """
    xp = get_array_module(x)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(pair, (kernel_size, stride, padding, dilation))
    N, C, H, W = x.shape
    Ho = conv_output_size(H, kh, sh, ph, dh)
    Wo = conv_output_size(W, kw, sw, pw, dw)
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    sN, sC, sH, sW = x.strides
    windows = xp.lib.stride_tricks.as_strided(
        x, shape=(N, C, kh, kw, Ho, Wo), strides=(sN, sC, sH * dh, sW * dw, sH * sh, sW * sw)
    )
    # (N, C, kh, kw, Ho, Wo) -> (N, C*kh*kw, Ho*Wo); a 1x1/stride-1 conv needs no copy
    return windows.reshape(N, C * kh * kw, Ho * Wo)


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Fold columns back, summing overlaps: (N, C*kh*kw, Ho*Wo) -> (N, C, H, W).

    The adjoint of :func:`im2col`: ``<im2col(x), c> == <x, col2im(c)>``.
    """
    xp = get_array_module(cols)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(pair, (kernel_size, stride, padding, dilation))
    N, C, H, W = input_shape
    Ho = conv_output_size(H, kh, sh, ph, dh)
    Wo = conv_output_size(W, kw, sw, pw, dw)
    cols = cols.reshape(N, C, kh, kw, Ho, Wo)  # (N, C*kh*kw, Ho*Wo) -> (N, C, kh, kw, Ho, Wo)
    padded = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (Ho - 1) + 1, sh)
            columns = slice(j * dw, j * dw + sw * (Wo - 1) + 1, sw)
            padded[:, :, rows, columns] += cols[:, :, i, j]
    return padded[:, :, ph : ph + H, pw : pw + W]


# --- conv2d ------------------------------------------------------------------------------
def conv2d_forward(x, weight, bias, stride=1, padding=0, dilation=1):
    """Returns ``(out (N, C_out, Ho, Wo), cols (N, C_in*kh*kw, Ho*Wo))``."""
    N = x.shape[0]
    C_out, _, kh, kw = weight.shape
    cols = im2col(x, (kh, kw), stride, padding, dilation)
    Ho = conv_output_size(x.shape[2], kh, *_axis(stride, padding, dilation, 0))
    Wo = conv_output_size(x.shape[3], kw, *_axis(stride, padding, dilation, 1))
    out = weight.reshape(C_out, -1) @ cols  # (C_out, C_in*kh*kw) @ (N, C_in*kh*kw, L) -> (N, C_out, L)
    out = out.reshape(N, C_out, Ho, Wo)  # (N, C_out, Ho*Wo) -> (N, C_out, Ho, Wo)
    if bias is not None:
        out += bias.reshape(1, C_out, 1, 1)
    return out, cols


def conv2d_backward(grad_out, x_shape, cols, weight, stride=1, padding=0, dilation=1,
                    need=(True, True, True)):
    """Gradients ``(d_input, d_weight, d_bias)``; entries not in ``need`` are ``None``."""
    N, C_out = grad_out.shape[:2]
    g = grad_out.reshape(N, C_out, -1)  # (N, C_out, Ho, Wo) -> (N, C_out, Ho*Wo)
    d_input = d_weight = d_bias = None
    if need[0]:
        d_cols = weight.reshape(C_out, -1).T @ g  # (C_in*kh*kw, C_out) @ (N, C_out, L)
        d_input = col2im(d_cols, x_shape, weight.shape[2:], stride, padding, dilation)
    if need[1]:
        # sum over images of (C_out, L) @ (L, C_in*kh*kw)
        d_weight = (g @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(weight.shape)
    if need[2]:
        d_bias = grad_out.sum(axis=(0, 2, 3))
    return d_input, d_weight, d_bias


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1):
    """``torch.nn.functional.conv2d`` (groups=1): input (N, C_in, H, W), weight
    (C_out, C_in, kh, kw), bias (C_out,) or None -> (N, C_out, Ho, Wo)."""
    x, w, b = _data(input), _data(weight), _data(bias)
    _check_conv("conv2d", x, w, b, in_channels=w.shape[1] if w.ndim == 4 else None,
                out_channels=w.shape[0] if w.ndim == 4 else None)
    for axis, name in ((2, "height"), (3, "width")):
        size = conv_output_size(x.shape[axis], w.shape[axis], *_axis(stride, padding, dilation, axis - 2))
        if size < 1:
            raise ValueError(
                f"conv2d: input {name} {x.shape[axis]} is too small for kernel {tuple(w.shape[2:])} "
                f"with padding {padding} and dilation {dilation} (input shape {tuple(x.shape)})"
            )
    out, cols = conv2d_forward(x, w, b, stride, padding, dilation)
    cols = cols if needs_grad(weight) else None  # only d_weight needs the unfolded input

    def backward(g):
        need = (needs_grad(input), needs_grad(weight), needs_grad(bias))
        return conv2d_backward(g, x.shape, cols, w, stride, padding, dilation, need)

    return apply(out, (input, weight, bias), backward)


# --- conv_transpose2d ----------------------------------------------------------------------
def conv_transpose2d_output_size(size, kernel, stride, padding, output_padding, dilation):
    """Output length of a transposed convolution along one axis."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_transpose2d_forward(x, weight, bias, stride=1, padding=0, output_padding=0, dilation=1):
    """input (N, C_in, H, W), weight (C_in, C_out, kh, kw) -> (N, C_out, Ho, Wo)."""
    N, C_in, H, W = x.shape
    _, C_out, kh, kw = weight.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = map(pair, (stride, padding, output_padding, dilation))
    Ho = conv_transpose2d_output_size(H, kh, sh, ph, oph, dh)
    Wo = conv_transpose2d_output_size(W, kw, sw, pw, opw, dw)
    # (C_out*kh*kw, C_in) @ (N, C_in, H*W) -> (N, C_out*kh*kw, H*W)
    cols = weight.reshape(C_in, -1).T @ x.reshape(N, C_in, H * W)
    out = col2im(cols, (N, C_out, Ho, Wo), (kh, kw), stride, padding, dilation)
    if bias is not None:
        out += bias.reshape(1, C_out, 1, 1)
    return out


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1,
                              need=(True, True, True)):
    """Gradients ``(d_input, d_weight, d_bias)`` of :func:`conv_transpose2d_forward`."""
    N, C_in, H, W = x.shape
    g_cols = im2col(grad_out, weight.shape[2:], stride, padding, dilation)  # (N, C_out*kh*kw, H*W)
    d_input = d_weight = d_bias = None
    if need[0]:
        d_input = (weight.reshape(C_in, -1) @ g_cols).reshape(x.shape)  # (N, C_in, H*W) -> x.shape
    if need[1]:
        x_flat = x.reshape(N, C_in, H * W)  # (N, C_in, H, W) -> (N, C_in, H*W)
        d_weight = (x_flat @ g_cols.transpose(0, 2, 1)).sum(axis=0).reshape(weight.shape)
    if need[2]:
        d_bias = grad_out.sum(axis=(0, 2, 3))
    return d_input, d_weight, d_bias


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    """``torch.nn.functional.conv_transpose2d`` (groups=1): input (N, C_in, H, W), weight
    (C_in, C_out, kh, kw), bias (C_out,) or None -> (N, C_out, Ho, Wo)."""
    x, w, b = _data(input), _data(weight), _data(bias)
    _check_conv("conv_transpose2d", x, w, b, in_channels=w.shape[0] if w.ndim == 4 else None,
                out_channels=w.shape[1] if w.ndim == 4 else None)
    for s, d, op in zip(pair(stride), pair(dilation), pair(output_padding), strict=True):
        if not op < max(s, d):
            raise ValueError(
                f"conv_transpose2d: output_padding {output_padding} must be smaller than "
                f"stride {stride} or dilation {dilation}"
            )
    out = conv_transpose2d_forward(x, w, b, stride, padding, output_padding, dilation)
    if min(out.shape[2:]) < 1:
        raise ValueError(f"conv_transpose2d: output would be empty, shape {tuple(out.shape)}")

    def backward(g):
        need = (needs_grad(input), needs_grad(weight), needs_grad(bias))
        return conv_transpose2d_backward(g, x, w, stride, padding, dilation, need)

    return apply(out, (input, weight, bias), backward)


# --- helpers -----------------------------------------------------------------------------
def _axis(stride, padding, dilation, axis):
    """(stride, padding, dilation) along axis 0 (height) or 1 (width)."""
    return pair(stride)[axis], pair(padding)[axis], pair(dilation)[axis]


def _check_conv(op, x, w, b, in_channels, out_channels):
    """Shapes and dtypes of a convolution's operands, with messages naming both shapes."""
    check_shape(op, "weight", w, "(C_out, C_in, kh, kw)" if op == "conv2d" else "(C_in, C_out, kh, kw)",
                ndim=4)
    check_shape(op, "input", x, f"(N, {in_channels}, H, W)", ndim=4, dims={1: in_channels})
    check_float(op, "input", x)
    check_same_dtype(op, ("input", x), ("weight", w))
    if b is not None:
        check_shape(op, "bias", b, f"({out_channels},)", ndim=1, dims={0: out_channels})
        check_same_dtype(op, ("input", x), ("bias", b))
