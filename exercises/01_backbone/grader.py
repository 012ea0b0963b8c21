"""Grader of exercise 01: the learner's functions against mrcnn_np and, when installed, torch.

Every task runs a few fixed random float64 cases (odd and non-square sizes, batch 2,
strides 1 and 2, padding, 1x1 / 3x3 / 7x7 / non-square kernels) and compares with a
relative tolerance of 1e-10 of the reference's largest value. conv2d_backward's three
gradients are also judged by central differences of sum(grad_out * conv2d(x, w, b)) in float64
(128 probed entries of each, all of a smaller one), on the two cases with overlapping windows
and padding: a judge that needs no reference implementation. When a result is one of the
mistakes in ``mistakes.py``, the message ends with a hint.
"""

import numpy as np

from mrcnn_np.exercises import Mistakes, Task, caller, compare, for_each_case, function, references, shape_str
from mrcnn_np.exercises import as_tuple as _as_tuple
from mrcnn_np.exercises import assert_close as _assert_close
from mrcnn_np.exercises import assert_gradient as _assert_gradient
from mrcnn_np.exercises import hinted as _hinted

STUB = "exercise.py"
RTOL = 1e-10
MISTAKES = Mistakes(__file__)

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
# the CONV_CASES whose gradients are also judged by central differences: 3x3 windows that overlap,
# with padding, at stride 1 and 2; PROBES entries of each gradient (all of the smaller ones): ~0.05 s
DIFFERENCE_CASES = (0, 3)
PROBES = 128
# (x shape, planes, stride): C_out = 4 * planes; a downsample exists when stride 2 or C_in != C_out
BOTTLENECK_CASES = [
    ((2, 16, 7, 5), 4, 1),
    ((2, 8, 9, 6), 4, 2),
    ((1, 8, 5, 7), 4, 1),
]


def _conv_case(x_shape, w_shape, with_bias, stride, padding):
    return (f"x {shape_str(x_shape)}, weight {shape_str(w_shape)}, {'bias' if with_bias else 'no bias'}, "
            f"stride={stride}, padding={padding}")


def _close(got, expected, what):
    _assert_close(got, expected, what, RTOL)


def _hint(task, got, call, parts=None):
    """``hint(expected)`` for :func:`compare`: the hint of the mistake of ``task`` that ``got`` reproduces."""
    return lambda expected: MISTAKES.hint(task, got, expected, call, parts)


# --- task (a) ----------------------------------------------------------------------------------
def _im2col_cases():
    rng = np.random.default_rng(1)
    for x_shape, kernel, stride, padding in IM2COL_CASES:
        yield rng.standard_normal(x_shape), kernel, stride, padding


def check_im2col(ex, x, kernel, stride, padding):
    from mrcnn_np.nn.conv import im2col as reference

    case = f"im2col(x {shape_str(x.shape)}, kernel_size={kernel}, stride={stride}, padding={padding})"
    call = caller(x, kernel, stride, padding)
    got = call(function(ex, "im2col"))
    refs, note = references((f"{case} vs mrcnn_np.nn.conv.im2col", reference(x, kernel, stride, padding)), ("torch",),
                            lambda torch: (f"{case} vs torch.nn.functional.unfold", torch.nn.functional.unfold(
                                torch.tensor(x), kernel, padding=padding, stride=stride).numpy()))
    compare(got, refs, _close, _hint("im2col", got, call))
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _conv_cases():
    """(x, weight, bias or None, stride, padding)."""
    rng = np.random.default_rng(2)
    for x_shape, w_shape, with_bias, stride, padding in CONV_CASES:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        yield x, w, rng.standard_normal(w_shape[0]) if with_bias else None, stride, padding


def check_conv2d_forward(ex, x, w, b, stride, padding):
    from mrcnn_np.nn.functional import conv2d as reference

    case = f"conv2d_forward({_conv_case(x.shape, w.shape, b is not None, stride, padding)})"
    call = caller(x, w, b, stride, padding)
    got = call(function(ex, "conv2d_forward"))

    def torch_conv(torch):
        tensors = [None if a is None else torch.tensor(a) for a in (x, w, b)]
        return f"{case} vs torch.nn.functional.conv2d", torch.nn.functional.conv2d(
            *tensors, stride=stride, padding=padding).numpy()

    refs, note = references((f"{case} vs mrcnn_np.nn.functional.conv2d", reference(x, w, b, stride, padding).data),
                            ("torch",), torch_conv)
    compare(got, refs, _close, _hint("conv2d_forward", got, call))
    return note


# --- task (c) ----------------------------------------------------------------------------------
def _backward_cases():
    """(grad_out, x, weight, bias, stride, padding, by_differences); the gradients do not depend on the
    bias, so the references always use one (for d_bias)."""
    from mrcnn_np.autograd import Tensor
    from mrcnn_np.nn.functional import conv2d

    rng = np.random.default_rng(3)
    for index, (x_shape, w_shape, _, stride, padding) in enumerate(CONV_CASES):
        x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
        out_shape = conv2d(Tensor(x), Tensor(w), Tensor(b), stride, padding).shape
        yield rng.standard_normal(out_shape), x, w, b, stride, padding, index in DIFFERENCE_CASES


def _autograd(torch, g, x, w, b, stride, padding):
    """(d_x, d_weight, d_bias) of torch's conv2d."""
    th = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    torch.nn.functional.conv2d(*th, stride=stride, padding=padding).backward(torch.tensor(g))
    return tuple(t.grad.numpy() for t in th)


def _by_differences(got, g, x, w, b, stride, padding, case):
    """Each of ``got`` = (d_x, d_weight, d_bias) against central differences of
    f = sum(g * conv2d(x, w, b)), varying that one argument (mrcnn_np's conv2d, float64)."""
    from mrcnn_np.autograd import Tensor
    from mrcnn_np.nn.functional import conv2d

    def f(x_, w_, b_):
        return float(np.sum(g * conv2d(Tensor(x_), Tensor(w_), Tensor(b_), stride, padding).data))

    varied = {"d_x": (x, lambda v: f(v, w, b)), "d_weight": (w, lambda v: f(x, v, b)),
              "d_bias": (b, lambda v: f(x, w, v))}
    for (name, (at, loss)), value in zip(varied.items(), got, strict=True):
        _assert_gradient(value, loss, at, f"{name} of {case}, d sum(grad_out * conv2d(x, weight, bias))",
                         probes=PROBES)


def check_conv2d_backward(ex, g, x, w, b, stride, padding, by_differences):
    from mrcnn_np.autograd import Tensor
    from mrcnn_np.nn.functional import conv2d

    tx, tw, tb = (Tensor(a, requires_grad=True) for a in (x, w, b))
    conv2d(tx, tw, tb, stride, padding).backward(g)
    case = f"conv2d_backward(grad_out {shape_str(g.shape)}; {_conv_case(x.shape, w.shape, True, stride, padding)})"
    call = caller(g, x, w, stride, padding)
    got = _as_tuple(call(function(ex, "conv2d_backward")), 3, case, "(d_x, d_weight, d_bias)")
    refs, note = references(("mrcnn_np autograd", (tx.grad, tw.grad, tb.grad)), ("torch",),
                            lambda torch: ("torch autograd", _autograd(torch, g, x, w, b, stride, padding)))
    for reference, expected in refs:
        for name, value, right in zip(("d_x", "d_weight", "d_bias"), got, expected, strict=True):
            try:
                _close(value, right, f"{name} of {case} vs {reference}")
            except AssertionError as error:  # d_x, d_weight and d_bias recognised apart
                raise _hinted(error, MISTAKES.hint("conv2d_backward", got, expected, call, list)) from None
    if by_differences:
        _by_differences(got, g, x, w, b, stride, padding, case)
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


def _bottleneck_cases():
    """(x, state dict, planes, stride, mrcnn_np's block with that state)."""
    from mrcnn_np import nn
    from mrcnn_np.model.backbone import Bottleneck

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
        yield rng.standard_normal(x_shape), state, planes, stride, block


def _torch_bottleneck(torch, resnet, ops, x, state, planes, stride):
    c_in, c_out = x.shape[1], 4 * planes
    ds = None
    if "downsample.0.weight" in state:
        ds = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                 ops.FrozenBatchNorm2d(c_out))
    theirs = resnet.Bottleneck(c_in, planes, stride, ds, norm_layer=ops.FrozenBatchNorm2d).double().eval()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    with torch.no_grad():
        return theirs(torch.tensor(x)).numpy()


def check_bottleneck_forward(ex, x, state, planes, stride, block):
    params = "params with downsample.*" if "downsample.0.weight" in state else "params without downsample"
    case = f"bottleneck_forward(x {shape_str(x.shape)}, {params}, planes={planes}, stride={stride})"
    call = caller(x, state, stride)
    got = call(function(ex, "bottleneck_forward"))
    refs, note = references((f"{case} vs mrcnn_np.model.backbone.Bottleneck", block(x).data),
                            ("torch", "torchvision.models.resnet", "torchvision.ops"), lambda *modules: (
                                f"{case} vs torchvision.models.resnet.Bottleneck",
                                _torch_bottleneck(*modules, x, state, planes, stride)))
    compare(got, refs, _close, _hint("bottleneck_forward", got, call))
    return note


TASKS = [
    Task("im2col", "(a) unfold receptive fields into columns", for_each_case(_im2col_cases, check_im2col)),
    Task("conv2d_forward", "(b) convolution as im2col + matmul", for_each_case(_conv_cases, check_conv2d_forward)),
    Task("conv2d_backward", "(c) d_x, d_weight, d_bias of the convolution",
         for_each_case(_backward_cases, check_conv2d_backward)),
    Task("bottleneck_forward", "(d) ResNet bottleneck block, frozen BN",
         for_each_case(_bottleneck_cases, check_bottleneck_forward)),
]
