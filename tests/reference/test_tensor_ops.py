"""The tensor operations of mrcnn_np.autograd against torch: values and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mrcnn_np.autograd as ag
from tests.reference.harness import compare_with_torch

DTYPES = [np.float64, np.float32]
R = np.random.default_rng(0)
A, B, C = R.standard_normal((2, 3, 4)), R.standard_normal((3, 1)), R.uniform(1, 2, (4,))

CASES = {
    "add broadcast": (lambda a, b: a + b, lambda a, b: a + b, [A, B]),
    "sub broadcast": (lambda a, b: a - b, lambda a, b: a - b, [A, B]),
    "mul broadcast": (lambda a, c: a * c, lambda a, c: a * c, [A, C]),
    "div broadcast": (lambda a, c: a / c, lambda a, c: a / c, [A, C]),
    "pow, neg, scalars": (lambda a: -(2.0 * a - 1.0) ** 2 / 3.0, lambda a: -(2.0 * a - 1.0) ** 2 / 3.0, [A]),
    "exp and log": (lambda c: ag.log(ag.exp(c) * c), lambda c: torch.log(torch.exp(c) * c), [C]),
    "matmul batched": (lambda a, b: a @ b, lambda a, b: a @ b, [A, R.standard_normal((4, 5))]),
    "reshape": (lambda a: a.reshape(6, 4), lambda a: a.reshape(6, 4), [A]),
    "permute": (lambda a: a.permute(2, 0, 1), lambda a: a.permute(2, 0, 1), [A]),
    "concat": (lambda a, b: ag.concat([a, b], axis=1), lambda a, b: torch.cat([a, b], 1),
               [A, R.standard_normal((2, 2, 4))]),
    "stack": (lambda a, b: ag.stack([a, b], axis=2), lambda a, b: torch.stack([a, b], 2), [A, A * 2]),
    "slice": (lambda a: a[:, 1:, ::2], lambda a: a[:, 1:, ::2], [A]),
    "gather with repeats": (lambda a: a[:, [0, 2, 2]], lambda a: a[:, [0, 2, 2]], [A]),
    "boolean mask": (lambda a: a[:, np.array([True, False, True])],
                     lambda a: a[:, torch.tensor([True, False, True])], [A]),
    "sum axes": (lambda a: a.sum(axis=(0, 2)), lambda a: a.sum(dim=(0, 2)), [A]),
    "sum keepdims": (lambda a: a.sum(axis=1, keepdims=True), lambda a: a.sum(dim=1, keepdim=True), [A]),
    "mean all": (lambda a: a.mean(), lambda a: a.mean(), [A]),
    "mean axis": (lambda a: a.mean(axis=-1), lambda a: a.mean(dim=-1), [A]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_tensor_op(case, dtype):
    ours, theirs, arrays = CASES[case]
    compare_with_torch(ours, theirs, arrays, list(range(len(arrays))), dtype, what=case)
