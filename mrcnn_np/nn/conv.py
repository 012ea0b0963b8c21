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
The layers lay the batch out side by side, ``cols (C_in*kh*kw, N*Ho*Wo)``
(:func:`im2col_batch_columns`), so a whole batch is *one* matrix product: NumPy's
``(C_out, K) @ (N, K, L)`` broadcasts over the batch with one small product per image,
which for the mask head's ~100 RoIs of 14x14 was 30x slower.

This file is the specification (``impl="numpy"``). On the CPU, ``impl="auto"`` runs
:mod:`mrcnn_np.kernels.conv` instead: the same products one cache-sized tile of output positions
at a time, so the unfolded matrix never exists whole (for a 3x3 conv of 256 channels on a
200x200 map it would be 368 MB), tested against this version in
``tests/kernels/test_conv_kernels.py``; on a GPU (CuPy) ``"auto"`` is this version, with cuBLAS.

Torch references: ``torch.nn.functional.conv2d`` / ``conv_transpose2d``.
"""

from __future__ import annotations

from ..autograd import apply, is_grad_enabled, needs_grad
from ..backend import KernelTable, as_array, get_array_module
from ..checks import check_float, check_same_dtype, check_shape, pair


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one axis (torch's formula, floor division)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _windows(x, kernel_size, stride, padding, dilation):
    """The receptive fields of (N, C, H, W) as a strided view (N, C, kh, kw, Ho, Wo) of the padded input."""
    xp = get_array_module(x)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(pair, (kernel_size, stride, padding, dilation))
    N, C, H, W = x.shape
    Ho = conv_output_size(H, kh, sh, ph, dh)
    Wo = conv_output_size(W, kw, sw, pw, dw)
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    sN, sC, sH, sW = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(N, C, kh, kw, Ho, Wo), strides=(sN, sC, sH * dh, sW * dw, sH * sh, sW * sw)
    )


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """Unfold receptive fields into columns: (N, C, H, W) -> (N, C*kh*kw, Ho*Wo).

    Row ``c*kh*kw + i*kw + j`` of a column holds input channel ``c`` at kernel tap
    ``(i, j)``, the order of ``weight.reshape(C_out, -1)``.
    """
    windows = _windows(x, kernel_size, stride, padding, dilation)
    N, C, kh, kw, Ho, Wo = windows.shape
    # (N, C, kh, kw, Ho, Wo) -> (N, C*kh*kw, Ho*Wo); a 1x1/stride-1 conv needs no copy
    return windows.reshape(N, C * kh * kw, Ho * Wo)


def im2col_batch_columns(x, kernel_size, stride=1, padding=0, dilation=1):
    """:func:`im2col` with the images side by side: (N, C, H, W) -> (C*kh*kw, N*Ho*Wo).

    Column ``n*Ho*Wo + p`` is image ``n``'s receptive field at output position ``p``. One
    matrix product with this covers the whole batch, which is what the layers use.
    """
    windows = _windows(x, kernel_size, stride, padding, dilation)
    N, C, kh, kw, Ho, Wo = windows.shape
    # (N, C, kh, kw, Ho, Wo) -> (C, kh, kw, N, Ho, Wo) -> (C*kh*kw, N*Ho*Wo)
    return windows.transpose(1, 2, 3, 0, 4, 5).reshape(C * kh * kw, N * Ho * Wo)


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Fold columns back, summing overlaps: (N, C*kh*kw, Ho*Wo) -> (N, C, H, W).

    The adjoint of :func:`im2col`: ``<im2col(x), c> == <x, col2im(c)>``.
    """
    N, C, H, W = input_shape
    kh, kw = pair(kernel_size)
    Ho, Wo = _output_hw(input_shape, (kh, kw), stride, padding, dilation)
    # (N, C*kh*kw, Ho*Wo) -> (N, C, kh, kw, Ho, Wo)
    return _fold(cols.reshape(N, C, kh, kw, Ho, Wo), input_shape, stride, padding, dilation)


def col2im_batch_columns(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """The adjoint of :func:`im2col_batch_columns`: (C*kh*kw, N*Ho*Wo) -> (N, C, H, W)."""
    N, C, H, W = input_shape
    kh, kw = pair(kernel_size)
    Ho, Wo = _output_hw(input_shape, (kh, kw), stride, padding, dilation)
    # (C*kh*kw, N*Ho*Wo) -> (C, kh, kw, N, Ho, Wo) -> view (C, N, kh, kw, Ho, Wo): folded channels-first,
    # every tap's slice is read in memory order (1.5x faster than folding (N, C, ...) here)
    windows = cols.reshape(C, kh, kw, N, Ho, Wo).transpose(0, 3, 1, 2, 4, 5)
    folded = _fold(windows, (C, N, H, W), stride, padding, dilation)
    return folded.transpose(1, 0, 2, 3)  # (C, N, H, W) -> view (N, C, H, W)


def _fold(windows, input_shape, stride, padding, dilation):
    """Sum ``windows`` (A, B, kh, kw, Ho, Wo) back onto the input positions they cover -> (A, B, H, W)
    (``input_shape``); (A, B) is (N, C), or (C, N) for the batch-columns layout."""
    xp = get_array_module(windows)
    (sh, sw), (ph, pw), (dh, dw) = map(pair, (stride, padding, dilation))
    A, B, H, W = input_shape
    _, _, kh, kw, Ho, Wo = windows.shape
    padded = xp.zeros((A, B, H + 2 * ph, W + 2 * pw), dtype=windows.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (Ho - 1) + 1, sh)
            columns = slice(j * dw, j * dw + sw * (Wo - 1) + 1, sw)
            padded[:, :, rows, columns] += windows[:, :, i, j]
    return padded[:, :, ph : ph + H, pw : pw + W]


def _output_hw(input_shape, kernel_size, stride, padding, dilation) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(pair, (kernel_size, stride, padding, dilation))
    return (conv_output_size(input_shape[2], kh, sh, ph, dh), conv_output_size(input_shape[3], kw, sw, pw, dw))


def _batch_first(a, N: int, h: int, w: int):
    """(C, N*h*w) from a batch-columns product -> (N, C, h, w), contiguous (no copy when N = 1)."""
    xp = get_array_module(a)
    # (C, N*h*w) -> (C, N, h, w) -> (N, C, h, w)
    return xp.ascontiguousarray(a.reshape(a.shape[0], N, h, w).transpose(1, 0, 2, 3))


def _channels_first(a):
    """(N, C, h, w) -> (C, N*h*w): the batch-columns layout of a gradient or an input (a view when N = 1)."""
    N, C = a.shape[:2]
    return a.transpose(1, 0, 2, 3).reshape(C, -1)  # (N, C, h, w) -> (C, N, h, w) -> (C, N*h*w)


# --- conv2d ------------------------------------------------------------------------------
def conv2d_forward(x, weight, bias, stride=1, padding=0, dilation=1):
    """Returns ``(out (N, C_out, Ho, Wo), cols (C_in*kh*kw, N*Ho*Wo))``: one matrix product for the batch."""
    N = x.shape[0]
    C_out, _, kh, kw = weight.shape
    Ho, Wo = _output_hw(x.shape, (kh, kw), stride, padding, dilation)
    cols = im2col_batch_columns(x, (kh, kw), stride, padding, dilation)
    out = weight.reshape(C_out, -1) @ cols  # (C_out, C_in*kh*kw) @ (C_in*kh*kw, N*L) -> (C_out, N*L)
    out = _batch_first(out, N, Ho, Wo)  # (C_out, N*L) -> (N, C_out, Ho, Wo)
    if bias is not None:
        out += bias.reshape(1, C_out, 1, 1)
    return out, cols


def conv2d_backward(grad_out, x_shape, cols, weight, stride=1, padding=0, dilation=1,
                    need=(True, True, True)):
    """Gradients ``(d_input, d_weight, d_bias)``; entries not in ``need`` are ``None``.
    ``cols`` is the forward's (C_in*kh*kw, N*Ho*Wo) (needed for ``d_weight`` only)."""
    C_out = grad_out.shape[1]
    g = _channels_first(grad_out)  # (N, C_out, Ho, Wo) -> (C_out, N*L)
    d_input = d_weight = d_bias = None
    if need[0]:
        d_cols = weight.reshape(C_out, -1).T @ g  # (C_in*kh*kw, C_out) @ (C_out, N*L)
        d_input = col2im_batch_columns(d_cols, x_shape, weight.shape[2:], stride, padding, dilation)
    if need[1]:
        # summed over images and positions: (C_in*kh*kw, N*L) @ (N*L, C_out) -> transposed (C_out, C_in*kh*kw).
        # (OpenBLAS is up to 20x slower on the same product written g @ cols.T, with the long axis inside.)
        d_weight = (cols @ g.T).T.reshape(weight.shape)
    if need[2]:
        d_bias = grad_out.sum(axis=(0, 2, 3))
    return d_input, d_weight, d_bias


def _conv2d_numpy(x, weight, bias, stride, padding, dilation, keep: bool, winograd: bool = False):
    """The specification as a table entry: ``(out, saved)``, ``saved`` the columns when ``keep``; always
    im2col (``winograd``, which lets the CPU kernel use :mod:`mrcnn_np.kernels.winograd`, is ignored)."""
    out, cols = conv2d_forward(x, weight, bias, stride, padding, dilation)
    return out, (cols if keep else None)


def _conv2d_backward_numpy(grad_out, x, saved, weight, stride, padding, dilation, need):
    return conv2d_backward(grad_out, x.shape, saved, weight, stride, padding, dilation, need)


# [True]: inference may run a 3x3 as Winograd's here (and fold norms: mrcnn_np.nn.fused, whose
# fusion(False) sets it False for the specification's arithmetic)
FAST_INFERENCE = [True]


def _kernels():
    from ..kernels import conv  # imports numba: on first use only

    return conv


# (forward, backward) pairs, here and for CONV_TRANSPOSE2D below. "numba": the tiled CPU versions
# of mrcnn_np/kernels/conv.py (same products, one cache-sized tile at a time). On CuPy arrays
# "auto" is the specification: im2col and one cuBLAS product, for which a GPU has the memory.
CONV2D = KernelTable("conv2d", numpy=(_conv2d_numpy, _conv2d_backward_numpy),
                     numba=lambda: _kernels().CONV2D_IMPL)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, impl: str = "auto"):
    """``torch.nn.functional.conv2d`` (groups=1): input (N, C_in, H, W), weight
    (C_out, C_in, kh, kw), bias (C_out,) or None -> (N, C_out, Ho, Wo). ``impl``: numpy (the
    im2col specification above) | numba (tiled, :mod:`mrcnn_np.kernels.conv`) | auto."""
    x, w, b = as_array(input), as_array(weight), as_array(bias)
    _check_conv("conv2d", x, w, b, in_channels=w.shape[1] if w.ndim == 4 else None,
                out_channels=w.shape[0] if w.ndim == 4 else None)
    for axis, name in ((2, "height"), (3, "width")):
        size = conv_output_size(x.shape[axis], w.shape[axis], *_axis(stride, padding, dilation, axis - 2))
        if size < 1:
            raise ValueError(
                f"conv2d: input {name} {x.shape[axis]} is too small for kernel {tuple(w.shape[2:])} "
                f"with padding {padding} and dilation {dilation} (input shape {tuple(x.shape)})"
            )
    forward_impl, backward_impl = CONV2D.select(impl, x)
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    # only d_weight needs the unfolded input; outside the tape (inference) the CPU kernel may use Winograd's
    # F(2x2, 3x3) for a 3x3 stride-1 conv (other last bits), unless fusion(False) asks for the specification's
    # arithmetic; training always runs the im2col products
    out, saved = forward_impl(x, w, b, stride, padding, dilation, needs_grad(weight),
                              winograd=not is_grad_enabled() and FAST_INFERENCE[0])

    def backward(g):
        need = (needs_grad(input), needs_grad(weight), needs_grad(bias))
        return backward_impl(g, x, saved, w, stride, padding, dilation, need)

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
    # (C_out*kh*kw, C_in) @ (C_in, N*H*W) -> (C_out*kh*kw, N*H*W)
    cols = weight.reshape(C_in, -1).T @ _channels_first(x)
    out = col2im_batch_columns(cols, (N, C_out, Ho, Wo), (kh, kw), stride, padding, dilation)
    if bias is not None:
        out += bias.reshape(1, C_out, 1, 1)
    return out


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1,
                              need=(True, True, True)):
    """Gradients ``(d_input, d_weight, d_bias)`` of :func:`conv_transpose2d_forward`."""
    N, C_in, H, W = x.shape
    g_cols = im2col_batch_columns(grad_out, weight.shape[2:], stride, padding, dilation)  # (C_out*kh*kw, N*H*W)
    d_input = d_weight = d_bias = None
    if need[0]:
        d_input = _batch_first(weight.reshape(C_in, -1) @ g_cols, N, H, W)  # (C_in, N*H*W) -> (N, C_in, H, W)
    if need[1]:
        # (C_out*kh*kw, N*H*W) @ (N*H*W, C_in), summed over images -> transposed (C_in, C_out*kh*kw)
        d_weight = (g_cols @ _channels_first(x).T).T.reshape(weight.shape)
    if need[2]:
        d_bias = grad_out.sum(axis=(0, 2, 3))
    return d_input, d_weight, d_bias


def _conv_transpose2d_numpy(x, weight, bias, stride, padding, output_padding, dilation, output_size):
    """The specification as a table entry (it derives the output size itself)."""
    return conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding, dilation)


CONV_TRANSPOSE2D = KernelTable("conv_transpose2d", numpy=(_conv_transpose2d_numpy, conv_transpose2d_backward),
                               numba=lambda: _kernels().CONV_TRANSPOSE2D_IMPL)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1,
                     impl: str = "auto"):
    """``torch.nn.functional.conv_transpose2d`` (groups=1): input (N, C_in, H, W), weight
    (C_in, C_out, kh, kw), bias (C_out,) or None -> (N, C_out, Ho, Wo). ``impl``: numpy | numba | auto."""
    x, w, b = as_array(input), as_array(weight), as_array(bias)
    _check_conv("conv_transpose2d", x, w, b, in_channels=w.shape[0] if w.ndim == 4 else None,
                out_channels=w.shape[1] if w.ndim == 4 else None)
    for s, d, op in zip(pair(stride), pair(dilation), pair(output_padding), strict=True):
        if not op < max(s, d):
            raise ValueError(
                f"conv_transpose2d: output_padding {output_padding} must be smaller than "
                f"stride {stride} or dilation {dilation}"
            )
    stride, padding, output_padding, dilation = map(pair, (stride, padding, output_padding, dilation))
    output_size = tuple(conv_transpose2d_output_size(x.shape[2 + a], w.shape[2 + a], stride[a], padding[a],
                                                     output_padding[a], dilation[a]) for a in (0, 1))
    if min(output_size) < 1:
        raise ValueError(f"conv_transpose2d: output would be empty, shape {(x.shape[0], w.shape[1], *output_size)}")
    forward_impl, backward_impl = CONV_TRANSPOSE2D.select(impl, x)
    out = forward_impl(x, w, b, stride, padding, output_padding, dilation, output_size)

    def backward(g):
        need = (needs_grad(input), needs_grad(weight), needs_grad(bias))
        return backward_impl(g, x, w, stride, padding, dilation, need)

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
