"""The tape itself: accumulation, reuse of a node, no_grad, leaves, constants, errors."""

from __future__ import annotations

import numpy as np
import pytest

import mrcnn_np.autograd as ag
from mrcnn_np.autograd import Tensor, no_grad


def test_gradient_accumulates_over_backward_calls_and_paths():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * x + x  # x used on two paths
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data + 1)
    (x * 3.0).sum().backward()  # second backward adds, like torch
    np.testing.assert_array_equal(x.grad, 2 * x.data + 1 + 3)


def test_shared_subgraph_is_visited_once():
    x = Tensor(np.array(2.0), requires_grad=True)
    h = x * x  # reused node: its gradient must be the sum of both consumers'
    (h * h + h).backward()
    assert x.grad == pytest.approx(4 * 2.0**3 + 2 * 2.0)


def test_deep_chain_does_not_hit_recursion_limit():
    x = Tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(3))


def test_constants_and_arrays_receive_nothing():
    x = Tensor(np.ones(2), requires_grad=True)
    c = np.array([2.0, 3.0])
    y = (c * x + Tensor(c)) * 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, c)
    assert y.requires_grad and not Tensor(c).requires_grad


def test_no_grad_records_nothing():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    assert ag.is_grad_enabled()


def test_non_leaf_grad_only_on_request():
    x = Tensor(np.ones(2), requires_grad=True)
    h = (x * 2.0).retain_grad()
    k = x * 3.0
    (h * k).sum().backward()
    np.testing.assert_array_equal(h.grad, k.data)
    assert k.grad is None


def test_backward_errors():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2.0).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(1)).backward()
    with pytest.raises(ValueError, match="grad shape"):
        (x * 2.0).backward(np.ones(2))
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.arange(3), requires_grad=True)


def test_dtype_is_preserved():
    x = Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    y = (x * 2.0 + 1.0) / 3.0
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_numpy_conversion_sees_the_data():
    t = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    a = np.asarray(t)
    assert a.dtype == np.float64 and a.shape == (2, 3)
    np.testing.assert_array_equal(a, t.data)
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
