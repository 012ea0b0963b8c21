"""Stochastic gradient descent and learning-rate schedules, with torch's update rules.

``SGD`` follows ``torch.optim.SGD`` exactly (weight decay added to the gradient, momentum
buffer started from the first gradient, optional dampening and Nesterov). The schedules
set each group's ``lr`` to ``base_lr * factor(step)`` in closed form; their sequence
equals torch's ``LinearLR``, ``MultiStepLR`` and the two chained.

Optimiser and schedule state round-trip through ``state_dict()`` / ``load_state_dict()``
(plain dicts of numbers and arrays) so that training can resume exactly.
"""

from __future__ import annotations

import bisect
import copy

from ..backend import device_of, to_device

_SGD_DEFAULTS = {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}


class SGD:
    """``SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)``.

    ``params``: an iterable of Parameters, or of dicts ``{"params": [...], "lr": ...}``
    (parameter groups with their own hyper-parameters).

    Per parameter ``p`` with gradient ``g``::

        d = g + weight_decay * p
        buf = d                                  (first step)
        buf = momentum * buf + (1 - dampening) * d   (later steps)
        d = d + momentum * buf if nesterov else buf
        p -= lr * d
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov}
        params = list(params)
        if not params:
            raise ValueError("SGD: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for group in groups:
            full = {**defaults, **group, "params": list(group["params"])}
            full.setdefault("initial_lr", full["lr"])
            self.param_groups.append(full)
        self.state: dict[int, dict] = {}  # id(param) -> {"momentum_buffer": array}

    def _params(self):
        for group in self.param_groups:
            yield from group["params"]

    def zero_grad(self) -> None:
        for p in self._params():
            p.grad = None

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad if wd == 0 else p.grad + wd * p.data
                if momentum != 0:
                    state = self.state.setdefault(id(p), {})
                    buf = state.get("momentum_buffer")
                    if buf is not None and device_of(buf) != device_of(p.data):  # the model moved: follow it
                        buf = state["momentum_buffer"] = to_device(buf, device_of(p.data))
                    if buf is None:
                        buf = state["momentum_buffer"] = d.copy()
                    else:
                        buf *= momentum
                        buf += (1 - group["dampening"]) * d
                    d = d + momentum * buf if group["nesterov"] else buf
                p.data -= lr * d

    def state_dict(self) -> dict:
        """``{"state": {index: {"momentum_buffer": array}}, "param_groups": [...]}``;
        parameters are named by their position, as in torch."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = []
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = [index[id(p)] for p in group["params"]]
            groups.append(g)
        state = {index[pid]: {k: v.copy() for k, v in s.items()} for pid, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups, strict=True)
        ):
            raise ValueError("SGD.load_state_dict: the saved parameter groups do not match this optimiser's")
        params = list(self._params())
        for saved, group in zip(groups, self.param_groups, strict=True):
            group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            self.state[id(p)] = {k: to_device(v, device_of(p.data)).astype(p.dtype, copy=True) for k, v in s.items()}


class LRScheduler:
    """Sets ``group["lr"] = group["initial_lr"] * factor(step)``; ``step()`` advances by one.

    Construction applies step 0, as torch's schedulers do.
    """

    def __init__(self, optimizer: SGD):
        self.optimizer = optimizer
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def _apply(self) -> None:
        f = self.factor(self.last_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * f

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(copy.deepcopy(state_dict))
        self._apply()


class LinearLR(LRScheduler):
    """Factor goes linearly from ``start_factor`` to ``end_factor`` over ``total_iters`` steps
    (torch.optim.lr_scheduler.LinearLR); used as the warm-up."""

    def __init__(self, optimizer, start_factor: float = 1 / 3, end_factor: float = 1.0,
                 total_iters: int = 5):
        if not (0 < start_factor <= 1 and 0 <= end_factor <= 1):
            raise ValueError(f"LinearLR: factors must lie in (0, 1], got {start_factor}, {end_factor}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer)

    def factor(self, step):
        t = min(step, self.total_iters) / self.total_iters if self.total_iters > 0 else 1.0
        return self.start_factor + (self.end_factor - self.start_factor) * t


class MultiStepLR(LRScheduler):
    """Factor ``gamma ** (number of milestones <= step)`` (torch.optim.lr_scheduler.MultiStepLR)."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1):
        self.milestones, self.gamma = sorted(int(m) for m in milestones), gamma
        super().__init__(optimizer)

    def factor(self, step):
        return self.gamma ** bisect.bisect_right(self.milestones, step)


class WarmupMultiStepLR(LRScheduler):
    """Linear warm-up from ``warmup_factor`` over ``warmup_iters`` steps, then multi-step
    decay: the product of :class:`LinearLR` and :class:`MultiStepLR` (torch's
    ``ChainedScheduler`` of the two), the recipe of torchvision's detection references."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1, warmup_factor: float = 1e-3,
                 warmup_iters: int = 1000):
        self.milestones, self.gamma = sorted(int(m) for m in milestones), gamma
        self.warmup_factor, self.warmup_iters = warmup_factor, warmup_iters
        super().__init__(optimizer)

    def factor(self, step):
        t = min(step, self.warmup_iters) / self.warmup_iters if self.warmup_iters > 0 else 1.0
        warm = self.warmup_factor + (1 - self.warmup_factor) * t
        return warm * self.gamma ** bisect.bisect_right(self.milestones, step)
