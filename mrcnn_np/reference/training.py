"""torch.optim's twins of our training step: :func:`torchvision_optimizer` and
:func:`torchvision_train_step` are those of :func:`mrcnn_np.train.make_optimizer` and
:func:`mrcnn_np.train.train_step`, for a torchvision model from :mod:`.twins`. To make the two
steps draw the same anchors and RoIs, see :func:`mrcnn_np.reference.sampling.replay_sampling`.
Needs the ``reference`` extra.
"""

from __future__ import annotations

from . import require_torch


def torchvision_optimizer(model, recipe):
    """torch.optim's twin of :func:`mrcnn_np.train.make_optimizer`: ``torch.optim.SGD`` over the
    parameters that require a gradient, and the warm-up ``LinearLR`` chained with ``MultiStepLR``
    (``ChainedScheduler``): torchvision's ``references/detection`` recipe counted in iterations.
    Returns (SGD, scheduler)."""
    torch = require_torch()
    schedulers = torch.optim.lr_scheduler
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    chain = []
    if recipe.warmup_iters:  # (LinearLR over 0 iterations would keep start_factor for ever)
        chain.append(schedulers.LinearLR(optimizer, recipe.warmup_factor, 1.0, recipe.warmup_iters))
    chain.append(schedulers.MultiStepLR(optimizer, list(recipe.milestones), recipe.gamma))
    return optimizer, schedulers.ChainedScheduler(chain)


def torchvision_train_step(model, optimizer, images: list, targets: list) -> dict:
    """torchvision's twin of :func:`mrcnn_np.train.train_step`: the summed losses, backward, one
    optimiser step. ``images`` and ``targets`` as torch tensors (:func:`.twins.to_torch`,
    :func:`.twins.targets_to_torch`); returns the losses as floats and ``"loss"``, their sum."""
    optimizer.zero_grad()
    losses = model(images, targets)
    total = sum(losses.values())
    total.backward()
    optimizer.step()
    return {"loss": float(total.item()), **{k: float(v.item()) for k, v in losses.items()}}
