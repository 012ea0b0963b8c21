"""The fully connected layer on the CPU's threads; the specification is :func:`mrcnn_np.nn.functional.linear`.

The same three products as the specification, ``out = x @ weight.T`` and in the backward
``d_x = g @ weight`` and ``d_weight = g.T @ x``, each with the rows of its output shared out over
the kernel threads (:func:`~.threads.rows_product`: blocks of :data:`~.threads.ROW_BLOCK` rows,
one run per thread) where the product is large enough, the box head's fc6 for one (256 RoIs of
256x7x7 in the demo's training, 1000 of 256x7x7 into 1024 in ResNet-50-FPN's inference). BLAS runs
on one thread per thread (:mod:`.threads`), so a product not shared out runs on one core. Every output
value is one row of ``a`` times one column of ``b`` with the whole reduction, as in the specification;
only BLAS's handling of a narrower product's edge rows can move the last bits
(``tests/kernels/test_linear_kernels.py``).
"""

from __future__ import annotations

import numpy as np

from .threads import cpu_threads, rows_product


def linear_forward_threaded(x, weight, bias):
    """``x (*, in) @ weight (out, in).T + bias (out,)`` -> (*, out), the rows shared out."""
    x2 = np.ascontiguousarray(x).reshape(-1, weight.shape[1])  # (*, in) -> (M, in)
    out = np.empty((x2.shape[0], weight.shape[0]), dtype=np.result_type(x2, weight))

    def add_bias(m0, m1):
        out[m0:m1] += bias

    rows_product(x2, weight.T, out, cpu_threads(), None if bias is None else add_bias)
    return out.reshape(*x.shape[:-1], weight.shape[0])  # (M, out) -> (*, out)


def linear_backward_threaded(grad_out, x, weight, need):
    """``(d_x, d_weight, d_bias)`` of :func:`linear_forward_threaded`; entries not in ``need`` are None."""
    g2 = np.ascontiguousarray(grad_out).reshape(-1, weight.shape[0])  # (*, out) -> (M, out)
    threads = cpu_threads()
    d_x = d_weight = None
    if need[0]:
        d_x = np.empty((g2.shape[0], weight.shape[1]), dtype=np.result_type(g2, weight))
        rows_product(g2, weight, d_x, threads)  # (M, out) @ (out, in)
        d_x = d_x.reshape(*grad_out.shape[:-1], weight.shape[1])  # (M, in) -> (*, in)
    if need[1]:
        x2 = np.ascontiguousarray(x).reshape(-1, weight.shape[1])  # (*, in) -> (M, in)
        d_weight = np.empty(weight.shape, dtype=np.result_type(g2, x2))
        rows_product(g2.T, x2, d_weight, threads)  # (out, M) @ (M, in)
    return d_x, d_weight, g2.sum(axis=0) if need[2] else None


LINEAR_IMPL = (linear_forward_threaded, linear_backward_threaded)
