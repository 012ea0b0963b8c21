"""Reference solution of exercise 01 (the backbone). Try the exercise before reading this.

NumPy only. The library's version (mrcnn_np/nn/conv.py) unfolds with a strided view; here
each kernel tap (i, j) is copied with one strided slice, which is easier to read and as
correct: a kh x kw loop of array operations, never a loop over pixels.
"""

import numpy as np


def output_size(size, kernel, stride, padding):
    """Length of a convolution's output along one axis (torch's formula)."""
    return (size + 2 * padding - kernel) // stride + 1


# --- task (a) ----------------------------------------------------------------------------------
def im2col(x, kernel_size, stride, padding):
    """(N, C, H, W) -> (N, C*kh*kw, Ho*Wo); row c*kh*kw + i*kw + j holds channel c at tap (i, j)."""
    N, C, H, W = x.shape
    kh, kw = kernel_size
    Ho, Wo = output_size(H, kh, stride, padding), output_size(W, kw, stride, padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((N, C, kh, kw, Ho, Wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # tap (i, j) of output pixel (p, q) reads x_pad[p*stride + i, q*stride + j]
            cols[:, :, i, j] = x_pad[:, :, i : i + stride * Ho : stride, j : j + stride * Wo : stride]
    return cols.reshape(N, C * kh * kw, Ho * Wo)  # (N, C, kh, kw, Ho, Wo) -> (N, C*kh*kw, Ho*Wo)


# --- task (b) ----------------------------------------------------------------------------------
def conv2d_forward(x, weight, bias, stride, padding):
    """x (N, C_in, H, W), weight (C_out, C_in, kh, kw), bias (C_out,) or None -> (N, C_out, Ho, Wo)."""
    N, _, H, W = x.shape
    C_out, C_in, kh, kw = weight.shape
    Ho, Wo = output_size(H, kh, stride, padding), output_size(W, kw, stride, padding)
    cols = im2col(x, (kh, kw), stride, padding)  # (N, C_in*kh*kw, Ho*Wo)
    out = weight.reshape(C_out, C_in * kh * kw) @ cols  # (C_out, K) @ (N, K, Ho*Wo) -> (N, C_out, Ho*Wo)
    out = out.reshape(N, C_out, Ho, Wo)  # (N, C_out, Ho*Wo) -> (N, C_out, Ho, Wo)
    if bias is not None:
        out = out + bias.reshape(1, C_out, 1, 1)  # (C_out,) -> (1, C_out, 1, 1)
    return out


# --- task (c) ----------------------------------------------------------------------------------
def col2im(cols, x_shape, kernel_size, stride, padding):
    """(N, C*kh*kw, Ho*Wo) -> (N, C, H, W): the adjoint of im2col (overlaps add up)."""
    N, C, H, W = x_shape
    kh, kw = kernel_size
    Ho, Wo = output_size(H, kh, stride, padding), output_size(W, kw, stride, padding)
    cols = cols.reshape(N, C, kh, kw, Ho, Wo)  # (N, C*kh*kw, Ho*Wo) -> (N, C, kh, kw, Ho, Wo)
    x_pad = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x_pad[:, :, i : i + stride * Ho : stride, j : j + stride * Wo : stride] += cols[:, :, i, j]
    return x_pad[:, :, padding : padding + H, padding : padding + W]


def conv2d_backward(grad_out, x, weight, stride, padding):
    """grad_out (N, C_out, Ho, Wo) -> (d_x (N, C_in, H, W), d_weight (C_out, C_in, kh, kw), d_bias (C_out,)).

    With out = W2 @ cols (W2 = weight as a (C_out, K) matrix): d_cols = W2.T @ g, folded back
    by col2im; d_W2 = sum over images of g @ cols.T; d_bias = g summed over all but C_out.
    """
    N, C_out = grad_out.shape[:2]
    kh, kw = weight.shape[2:]
    g = grad_out.reshape(N, C_out, -1)  # (N, C_out, Ho, Wo) -> (N, C_out, Ho*Wo)
    cols = im2col(x, (kh, kw), stride, padding)  # (N, K, Ho*Wo), K = C_in*kh*kw
    w2 = weight.reshape(C_out, -1)  # (C_out, C_in, kh, kw) -> (C_out, K)
    d_cols = w2.T @ g  # (K, C_out) @ (N, C_out, Ho*Wo) -> (N, K, Ho*Wo)
    d_x = col2im(d_cols, x.shape, (kh, kw), stride, padding)
    d_weight = (g @ cols.transpose(0, 2, 1)).sum(axis=0)  # (N, C_out, L) @ (N, L, K) -> sum -> (C_out, K)
    d_weight = d_weight.reshape(weight.shape)  # (C_out, K) -> (C_out, C_in, kh, kw)
    d_bias = grad_out.sum(axis=(0, 2, 3))
    return d_x, d_weight, d_bias


# --- task (d) ----------------------------------------------------------------------------------
def frozen_batch_norm(x, params, prefix, eps=1e-5):
    """(N, C, H, W) -> (N, C, H, W): ``x * scale + shift`` with the statistics in ``params``."""
    scale = params[f"{prefix}.weight"] / np.sqrt(params[f"{prefix}.running_var"] + eps)
    shift = params[f"{prefix}.bias"] - params[f"{prefix}.running_mean"] * scale
    return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)


def relu(x):
    return np.maximum(x, 0)


def bottleneck_forward(x, params, stride):
    """(N, C_in, H, W) -> (N, 4P, Ho, Wo): 1x1 reduce, 3x3 (stride), 1x1 expand, + identity."""
    out = relu(frozen_batch_norm(conv2d_forward(x, params["conv1.weight"], None, 1, 0), params, "bn1"))
    out = relu(frozen_batch_norm(conv2d_forward(out, params["conv2.weight"], None, stride, 1), params, "bn2"))
    out = frozen_batch_norm(conv2d_forward(out, params["conv3.weight"], None, 1, 0), params, "bn3")
    if "downsample.0.weight" in params:  # the identity changes shape: project it
        identity = conv2d_forward(x, params["downsample.0.weight"], None, stride, 0)
        identity = frozen_batch_norm(identity, params, "downsample.1")
    else:
        identity = x
    return relu(out + identity)
