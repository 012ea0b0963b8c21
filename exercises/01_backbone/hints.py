"""Progressive hints of exercise 01, revealed one at a time by ``mrcnn-np check 01 --hint``."""

HINTS = {
    "im2col": [
        "Pad first (np.pad with padding zeros on H and W only), then copy. Do not loop over the\n"
        "output pixels: loop over the kh * kw kernel taps. For one tap (i, j), the values it reads\n"
        "for all output pixels at once are one strided slice of the padded input.",
        "Fill an array of shape (N, C, kh, kw, Ho, Wo): entry [:, :, i, j] is the slice of tap (i, j),\n"
        "of shape (N, C, Ho, Wo). Reshaping it to (N, C*kh*kw, Ho*Wo) gives exactly the row order\n"
        "(channel, i, j) and the column order (p, q) asked for.",
        "The steps, nearly in code:\n"
        "  Ho = (H + 2 * padding - kh) // stride + 1   (Wo likewise with W, kw)\n"
        "  x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))\n"
        "  cols = np.empty((N, C, kh, kw, Ho, Wo), x.dtype)\n"
        "  for i in range(kh): for j in range(kw):\n"
        "      cols[:, :, i, j] = x_pad[:, :, i : i + stride * Ho : stride, j : j + stride * Wo : stride]\n"
        "  return cols.reshape(N, C * kh * kw, Ho * Wo)",
        "Pitfalls: i runs along the height and j along the width (swapping them passes only square\n"
        "kernels on square inputs). The slice end is i + stride * Ho, not H: it must yield exactly Ho\n"
        "values. The first output position counts: // stride + 1.",
    ],
    "conv2d_forward": [
        "Every output pixel is a dot product of a filter with one column of im2col: all of them\n"
        "together are one matrix product of the filters, as rows, with the columns.",
        "cols = im2col(x, (kh, kw), stride, padding) is (N, K, Ho*Wo) with K = C_in * kh * kw, and\n"
        "weight.reshape(C_out, K) is (C_out, K): `@` broadcasts over the batch and gives\n"
        "(N, C_out, Ho*Wo). Reshape to (N, C_out, Ho, Wo), then add the bias as (1, C_out, 1, 1).",
        "The steps, nearly in code:\n"
        "  cols = im2col(x, (kh, kw), stride, padding)              (N, K, Ho*Wo)\n"
        "  out = weight.reshape(C_out, -1) @ cols                   (N, C_out, Ho*Wo)\n"
        "  out = out.reshape(N, C_out, Ho, Wo)\n"
        "  if bias is not None: out = out + bias.reshape(1, C_out, 1, 1)",
        "Pitfalls: do not transpose or flip the kernel: torch's conv2d is a cross-correlation, and\n"
        "weight.reshape orders each filter (channel, i, j), as im2col orders its rows. bias may be None.",
    ],
    "conv2d_backward": [
        "The forward pass is a matrix product out = W2 @ cols (W2 the weight as (C_out, K)), plus a\n"
        "bias broadcast over images and pixels. The gradients of a matrix product are matrix\n"
        "products with the other factor transposed; a broadcast's gradient is a sum.",
        "With g = grad_out as (N, C_out, Ho*Wo): d_bias sums g over images and pixels; d_W2 is\n"
        "g @ cols^T summed over the images; d_cols is W2^T @ g, which col2im folds back onto the\n"
        "input. col2im is the adjoint of im2col: the same loop over the taps, but adding into a\n"
        "zero padded array instead of reading from it, then the padding cut off.",
        "The steps, nearly in code:\n"
        "  g = grad_out.reshape(N, C_out, -1);  cols = im2col(x, (kh, kw), stride, padding)\n"
        "  w2 = weight.reshape(C_out, -1)\n"
        "  d_x = col2im(w2.T @ g, x.shape, (kh, kw), stride, padding)\n"
        "  d_weight = (g @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(weight.shape)\n"
        "  d_bias = grad_out.sum(axis=(0, 2, 3))\n"
        "  col2im: x_pad = zeros((N, C, H + 2p, W + 2p)); cols as (N, C, kh, kw, Ho, Wo); per tap (i, j):\n"
        "      x_pad[:, :, i : i + stride * Ho : stride, j : j + stride * Wo : stride] += cols[:, :, i, j]\n"
        "  then return x_pad[:, :, p : p + H, p : p + W]",
        "Pitfalls: where windows overlap (stride < kernel), one pixel is read by several columns and\n"
        "its gradients add up: += in col2im, never =. If d_x is wrong only at the borders, look at\n"
        "the padding you cut off. A check of your own: central differences of\n"
        "sum(grad_out * conv2d_forward(x, w, b)) at a few entries (mrcnn_np.exercises.central_difference).",
    ],
    "bottleneck_forward": [
        "Three convolutions in a row, 1x1 (reduce to P channels), 3x3 (with the stride) and 1x1\n"
        "(expand to 4P), each followed by its frozen batch norm, plus a shortcut. Read torchvision's\n"
        "Bottleneck.forward in models/resnet.py.",
        "A frozen batch norm is a per-channel affine map: reshape the (C,) statistics to (1, C, 1, 1)\n"
        "so they broadcast over (N, C, H, W). The shortcut is x itself, unless params holds\n"
        "downsample.*: then a strided 1x1 conv and its batch norm project x to the output's shape.",
        "The steps, nearly in code:\n"
        "  out = relu(bn(conv2d_forward(x, conv1.weight, None, 1, 0), 'bn1'))\n"
        "  out = relu(bn(conv2d_forward(out, conv2.weight, None, stride, 1), 'bn2'))\n"
        "  out = bn(conv2d_forward(out, conv3.weight, None, 1, 0), 'bn3')\n"
        "  identity = bn(conv2d_forward(x, downsample.0.weight, None, stride, 0), 'downsample.1')\n"
        "             if 'downsample.0.weight' in params else x\n"
        "  return relu(out + identity)\n"
        "  bn: (x - running_mean) / sqrt(running_var + eps) * weight + bias, eps = 1e-5",
        "Pitfalls: the ReLU after the residual sum is easy to forget, and so is the eps. No conv has\n"
        "a bias (pass None). The stride goes on the 3x3 conv and on the downsample conv, not on conv1.",
    ],
}
