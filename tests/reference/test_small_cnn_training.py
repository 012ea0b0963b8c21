"""A small CNN (conv, BN, ReLU, pool, linear, cross-entropy) trained by SGD with momentum,
weight decay and linear warm-up follows torch's parameter trajectory within 1e-9 (float64)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as tnn

import mrcnn_np.nn.functional as F
from mrcnn_np import nn
from mrcnn_np.autograd import Tensor
from mrcnn_np.nn.optim import SGD, LinearLR


class SmallCNN(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, rng=rng, dtype=np.float64)
        self.bn1 = nn.BatchNorm2d(6, dtype=np.float64)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False, rng=rng, dtype=np.float64)
        self.bn2 = nn.BatchNorm2d(8, dtype=np.float64)
        self.fc = nn.Linear(8 * 3 * 3, 4, rng=rng, dtype=np.float64)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)  # (N, 6, 6, 6)
        x = F.relu(self.bn2(self.conv2(x)))  # (N, 8, 3, 3)
        return self.fc(x.reshape(x.shape[0], -1))  # (N, 8, 3, 3) -> (N, 72)


def torch_cnn():
    return tnn.ModuleDict({
        "conv1": tnn.Conv2d(3, 6, 3, padding=1), "bn1": tnn.BatchNorm2d(6),
        "conv2": tnn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False), "bn2": tnn.BatchNorm2d(8),
        "fc": tnn.Linear(72, 4),
    }).double()


def torch_forward(m, x):
    x = tnn.functional.max_pool2d(torch.relu(m["bn1"](m["conv1"](x))), 3, 2, 1)
    x = torch.relu(m["bn2"](m["conv2"](x)))
    return m["fc"](x.flatten(1))


def test_five_sgd_steps_follow_torch():
    rng = np.random.default_rng(0)
    ours = SmallCNN(rng)
    ref = torch_cnn()
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    ours.train()
    ref.train()

    hyper = dict(lr=0.05, momentum=0.9, weight_decay=1e-3)
    opt, topt = SGD(ours.parameters(), **hyper), torch.optim.SGD(ref.parameters(), **hyper)
    sched = LinearLR(opt, start_factor=0.1, total_iters=3)
    tsched = torch.optim.lr_scheduler.LinearLR(topt, start_factor=0.1, total_iters=3)

    worst = 0.0
    for _ in range(5):
        x = rng.standard_normal((4, 3, 12, 12))
        y = rng.integers(0, 4, 4)
        opt.zero_grad()
        loss = F.cross_entropy(ours(Tensor(x)), y)
        loss.backward()
        opt.step()
        sched.step()

        topt.zero_grad()
        tloss = tnn.functional.cross_entropy(torch_forward(ref, torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        topt.step()
        tsched.step()

        assert abs(loss.item() - tloss.item()) <= 1e-9
        ref_sd = ref.state_dict()
        for key, value in ours.state_dict().items():
            diff = np.abs(np.asarray(value, np.float64) - ref_sd[key].numpy()).max()
            worst = max(worst, diff)
            assert diff <= 1e-9, f"{key} differs by {diff:.2e}"
    print(f"worst parameter difference after 5 steps: {worst:.2e}")
