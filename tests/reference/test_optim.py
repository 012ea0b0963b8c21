"""SGD and the LR schedules against torch.optim, and exact resume through state_dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrcnn_np.nn import Parameter
from mrcnn_np.nn.optim import SGD, LinearLR, MultiStepLR, WarmupMultiStepLR


def _torch_opt(p0, **kw):
    p = torch.tensor(p0.copy(), requires_grad=True)
    return p, torch.optim.SGD([p], **kw)


@pytest.mark.parametrize("kw", [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=1e-3),
])
def test_sgd_matches_torch(kw):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 4))
    ours = Parameter(p0.copy())
    opt = SGD([ours], **kw)
    tp, topt = _torch_opt(p0, **kw)
    for _ in range(6):
        g = rng.standard_normal((3, 4))
        ours.grad = g.copy()
        tp.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
        np.testing.assert_allclose(ours.data, tp.detach().numpy(), rtol=0, atol=1e-14)


def _lrs(sched, opt, steps):
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        sched.step()
    return out


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_schedules_match_torch():
    p = [Parameter(np.zeros(1))]
    tp = [torch.zeros(1, requires_grad=True)]
    TS = torch.optim.lr_scheduler
    cases = [
        (lambda o: LinearLR(o, 0.001, 1.0, 10), lambda o: TS.LinearLR(o, 0.001, 1.0, 10)),
        (lambda o: MultiStepLR(o, [8, 16], 0.1), lambda o: TS.MultiStepLR(o, [8, 16], 0.1)),
        (lambda o: WarmupMultiStepLR(o, [12, 20], 0.1, 0.01, 10),
         lambda o: TS.ChainedScheduler([TS.LinearLR(o, 0.01, 1.0, 10), TS.MultiStepLR(o, [12, 20], 0.1)])),
    ]
    for ours, theirs in cases:
        o, to = SGD(p, lr=0.02), torch.optim.SGD(tp, lr=0.02)
        a, b = _lrs(ours(o), o, 25), _lrs(theirs(to), to, 25)
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_resume_through_state_dict_is_exact():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(5) for _ in range(8)]

    def make():
        p = Parameter(np.linspace(-1, 1, 5))
        o = SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4)
        return p, o, WarmupMultiStepLR(o, [5], 0.1, 0.1, 3)

    def run(p, o, s, gs):
        for g in gs:
            p.grad = g.copy()
            o.step()
            s.step()

    p, o, s = make()
    run(p, o, s, grads)
    straight = p.data.copy()

    p, o, s = make()
    run(p, o, s, grads[:4])
    saved = (p.data.copy(), o.state_dict(), s.state_dict())
    p2, o2, s2 = make()
    p2.data[...] = saved[0]
    o2.load_state_dict(saved[1])
    s2.load_state_dict(saved[2])
    run(p2, o2, s2, grads[4:])
    np.testing.assert_array_equal(p2.data, straight)


def test_sgd_rejects_bad_arguments():
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([Parameter(np.zeros(1))], lr=0.1, nesterov=True)
