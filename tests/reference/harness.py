"""Run one function in mrcnn_np and in torch on the same inputs; collect outputs and grads."""

from __future__ import annotations

import numpy as np
import torch

from mrcnn_np.autograd import Tensor
from tests.helpers import RTOL, assert_rel


def compare_with_torch(ours, theirs, arrays, wrt, dtype, seed=0, what=""):
    """Assert that ``ours(*inputs)`` and ``theirs(*torch_inputs)`` agree in value and in the
    gradients of ``sum(out * w)`` (random ``w``) for the inputs at positions ``wrt``."""
    rng = np.random.default_rng(seed)
    arrays = [a.astype(dtype) if np.asarray(a).dtype.kind == "f" else a for a in arrays]
    ts = [Tensor(a.copy(), requires_grad=i in wrt) for i, a in enumerate(arrays)]
    th = [torch.tensor(a.copy(), requires_grad=i in wrt) for i, a in enumerate(arrays)]
    out = ours(*ts)
    ref = theirs(*th)
    rtol = RTOL[dtype]
    assert out.dtype == dtype, f"{what}: output dtype {out.dtype} != {np.dtype(dtype)}"
    assert_rel(out.data, ref.detach().numpy(), rtol, f"{what} forward")
    if not wrt:
        return
    w = rng.standard_normal(out.shape).astype(dtype)
    out.backward(w)
    ref.backward(torch.tensor(w))
    for i in wrt:
        assert ts[i].grad is not None, f"{what}: no gradient for input {i}"
        assert ts[i].grad.dtype == dtype
        assert_rel(ts[i].grad, th[i].grad.numpy(), rtol, f"{what} grad of input {i}")
