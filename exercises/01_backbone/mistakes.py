"""The classic mistakes of exercise 01, each declared once (how the grader uses them: exercises/README.md)."""

MISTAKES = {
    "im2col": [
        ("taps transposed in im2col", [("x_pad[:, :, i : i + stride * Ho : stride, j : j + stride * Wo : stride]\n",
                                        "x_pad[:, :, j : j + stride * Ho : stride, i : i + stride * Wo : stride]\n")],
         "tap (i, j) of output pixel (p, q) reads x_pad[p * stride + i, q * stride + j]: i runs along the height, j "
         "along the width"),
        ("output size off by one", [("// stride + 1", "// stride")],
         "the output size is (size + 2 * padding - kernel) // stride + 1: the first position counts too"),
    ],
    "conv2d_forward": [
        ("kernel transposed in conv2d_forward", [("out = weight.reshape(",
                                                  "out = weight.transpose(0, 1, 3, 2).reshape(")],
         "weight.reshape(C_out, C_in * kh * kw) orders each filter channel, i, j, as im2col orders its rows: do not "
         "transpose the kernel"),
    ],
    "conv2d_backward": [
        ("col2im overwrites overlaps instead of adding", [("Wo : stride] += cols[:, :, i, j]",
                                                           "Wo : stride] = cols[:, :, i, j]")],
         "where windows overlap (stride < kernel), their gradients add up in col2im: x_pad[...] += cols[...], not ="),
    ],
    "bottleneck_forward": [
        ("no ReLU after the residual sum", [("return relu(out + identity)", "return out + identity")],
         "the block ends with a ReLU after adding the identity: relu(out + identity)"),
        ("batch norm without eps", [("eps=1e-5):", "eps=0.0):")],
         "frozen batch norm divides by sqrt(running_var + eps), with eps = 1e-5"),
    ],
}
