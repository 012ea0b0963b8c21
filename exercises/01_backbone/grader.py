"""Grader of exercise 01: the learner's functions against mrcnn_np and, when installed, torch.

Every task runs a few fixed random float64 cases (odd and non-square sizes, batch 2,
strides 1 and 2, padding, 1x1 / 3x3 / 7x7 / non-square kernels) and compares with a
relative tolerance of 1e-10 of the reference's largest value.
"""

import numpy as np

from mrcnn_np.exercises import Task, assert_close, function, shape_str
from mrcnn_np.exercises import torch_modules as _torch_modules

STUB = "exercise.py"
RTOL = 1e-10

# (x shape, kernel (kh, kw), stride, padding)
IM2COL_CASES = [
    ((2, 3, 7, 5), (3, 3), 1, 1),
    ((1, 2, 9, 11), (7, 7), 2, 3),
    ((2, 4, 6, 5), (1, 1), 2, 0),
    ((2, 3, 5, 6), (3, 3), 2, 0),
    ((1, 3, 8, 7), (1, 3), 2, 1),
]
# (x shape, weight shape (C_out, C_in, kh, kw), with bias, stride, padding)
CONV_CASES = [
    ((2, 3, 7, 5), (4, 3, 3, 3), True, 1, 1),
    ((1, 3, 11, 9), (5, 3, 7, 7), False, 2, 3),
    ((2, 6, 6, 5), (8, 6, 1, 1), True, 2, 0),
    ((2, 4, 9, 8), (3, 4, 3, 3), False, 2, 1),
    ((1, 2, 7, 6), (3, 2, 3, 3), True, 2, 0),
    ((2, 2, 5, 7), (3, 2, 1, 3), True, 1, 1),
]
# (x shape, planes, stride): C_out = 4 * planes; a downsample exists when stride 2 or C_in != C_out
BOTTLENECK_CASES = [
    ((2, 16, 7, 5), 4, 1),
    ((2, 8, 9, 6), 4, 2),
    ((1, 8, 5, 7), 4, 1),
]
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _conv_case(x_shape, w_shape, with_bias, stride, padding):
    return (f"x {shape_str(x_shape)}, weight {shape_str(w_shape)}, {'bias' if with_bias else 'no bias'}, "
            f"stride={stride}, padding={padding}")


# --- task (a) ----------------------------------------------------------------------------------
def check_im2col(ex):
    from mrcnn_np.nn.conv import im2col as reference

    im2col = function(ex, "im2col")
    rng = np.random.default_rng(1)
    for x_shape, kernel, stride, padding in IM2COL_CASES:
        x = rng.standard_normal(x_shape)
        case = f"im2col(x {shape_str(x_shape)}, kernel_size={kernel}, stride={stride}, padding={padding})"
        got = im2col(x.copy(), kernel, stride, padding)
        assert_close(got, reference(x, kernel, stride, padding), f"{case} vs mrcnn_np.nn.conv.im2col", RTOL)
        modules, note = _torch_modules("torch")
        if modules:
            (torch,) = modules
            expected = torch.nn.functional.unfold(torch.tensor(x), kernel, padding=padding, stride=stride)
            assert_close(got, expected.numpy(), f"{case} vs torch.nn.functional.unfold", RTOL)
    return note


# --- task (b) ----------------------------------------------------------------------------------
def check_conv2d_forward(ex):
    from mrcnn_np.nn.functional import conv2d as reference

    conv2d_forward = function(ex, "conv2d_forward")
    rng = np.random.default_rng(2)
    for x_shape, w_shape, with_bias, stride, padding in CONV_CASES:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        b = rng.standard_normal(w_shape[0]) if with_bias else None
        case = f"conv2d_forward({_conv_case(x_shape, w_shape, with_bias, stride, padding)})"
        got = conv2d_forward(x.copy(), w.copy(), None if b is None else b.copy(), stride, padding)
        expected = reference(x, w, b, stride, padding).data
        assert_close(got, expected, f"{case} vs mrcnn_np.nn.functional.conv2d", RTOL)
        modules, note = _torch_modules("torch")
        if modules:
            (torch,) = modules
            t = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), None if b is None else torch.tensor(b),
                                           stride=stride, padding=padding)
            assert_close(got, t.numpy(), f"{case} vs torch.nn.functional.conv2d", RTOL)
    return note


# --- task (c) ----------------------------------------------------------------------------------
def check_conv2d_backward(ex):
    from mrcnn_np.autograd import Tensor
    from mrcnn_np.nn.functional import conv2d

    conv2d_backward = function(ex, "conv2d_backward")
    rng = np.random.default_rng(3)
    for x_shape, w_shape, _, stride, padding in CONV_CASES:
        x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
        # the gradients do not depend on the bias, so the references always use one (for d_bias)
        tx, tw, tb = (Tensor(a, requires_grad=True) for a in (x, w, b))
        out = conv2d(tx, tw, tb, stride, padding)
        g = rng.standard_normal(out.shape)
        out.backward(g)
        case = f"conv2d_backward(grad_out {shape_str(g.shape)}; {_conv_case(x_shape, w_shape, True, stride, padding)})"
        got = conv2d_backward(g.copy(), x.copy(), w.copy(), stride, padding)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise AssertionError(f"{case}: expected a tuple (d_x, d_weight, d_bias), got {type(got).__name__}"
                                 + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
        for name, value, ref in zip(("d_x", "d_weight", "d_bias"), got, (tx, tw, tb), strict=True):
            assert_close(value, ref.grad, f"{name} of {case} vs mrcnn_np autograd", RTOL)
        modules, note = _torch_modules("torch")
        if modules:
            (torch,) = modules
            th = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
            torch.nn.functional.conv2d(*th, stride=stride, padding=padding).backward(torch.tensor(g))
            for name, value, ref in zip(("d_x", "d_weight", "d_bias"), got, th, strict=True):
                assert_close(value, ref.grad.numpy(), f"{name} of {case} vs torch autograd", RTOL)
    return note


# --- task (d) ----------------------------------------------------------------------------------
def _random_bottleneck_state(block, rng):
    """Random weights (He-scaled) and FrozenBN buffers for every key of ``block``'s state dict."""
    state = {}
    for key, value in block.state_dict().items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith(".weight") and value.ndim == 4:
            state[key] = rng.standard_normal(value.shape) * np.sqrt(2.0 / np.prod(value.shape[1:]))
        else:  # BN weight, bias, running_mean
            state[key] = rng.standard_normal(value.shape) * 0.5 + (1.0 if key.endswith(".weight") else 0.0)
    return state


def check_bottleneck_forward(ex):
    from mrcnn_np import nn
    from mrcnn_np.model.backbone import Bottleneck

    bottleneck_forward = function(ex, "bottleneck_forward")
    rng = np.random.default_rng(4)
    for x_shape, planes, stride in BOTTLENECK_CASES:
        c_in, c_out = x_shape[1], 4 * planes
        downsample = None
        if stride != 1 or c_in != c_out:
            downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False, dtype=np.float64),
                                       nn.FrozenBatchNorm2d(c_out, dtype=np.float64))
        block = Bottleneck(c_in, planes, stride, downsample, dtype=np.float64)
        state = _random_bottleneck_state(block, rng)
        block.load_state_dict(state)
        x = rng.standard_normal(x_shape)
        params = "params with downsample.*" if downsample is not None else "params without downsample"
        case = f"bottleneck_forward(x {shape_str(x_shape)}, {params}, planes={planes}, stride={stride})"
        got = bottleneck_forward(x.copy(), {k: v.copy() for k, v in state.items()}, stride)
        assert_close(got, block(x).data, f"{case} vs mrcnn_np.model.backbone.Bottleneck", RTOL)
        modules, note = _torch_modules("torch", "torchvision.models.resnet", "torchvision.ops")
        if modules:
            torch, resnet, ops = modules
            ds = None
            if downsample is not None:
                ds = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                         ops.FrozenBatchNorm2d(c_out))
            theirs = resnet.Bottleneck(c_in, planes, stride, ds, norm_layer=ops.FrozenBatchNorm2d).double().eval()
            theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
            with torch.no_grad():
                expected = theirs(torch.tensor(x)).numpy()
            assert_close(got, expected, f"{case} vs torchvision.models.resnet.Bottleneck", RTOL)
    return note


TASKS = [
    Task("im2col", "(a) unfold receptive fields into columns", check_im2col),
    Task("conv2d_forward", "(b) convolution as im2col + matmul", check_conv2d_forward),
    Task("conv2d_backward", "(c) d_x, d_weight, d_bias of the convolution", check_conv2d_backward),
    Task("bottleneck_forward", "(d) ResNet bottleneck block, frozen BN", check_bottleneck_forward),
]
