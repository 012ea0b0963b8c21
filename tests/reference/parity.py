"""Checks that compare one of our models with its torchvision twin, shared by the reference tests."""

from __future__ import annotations

import numpy as np
import torch

from mrcnn_np import Tensor
from mrcnn_np.reference.sampling import replay_sampling
from mrcnn_np.reference.twins import to_torch
from tests.helpers import assert_rel


def assert_training_matches(tv, ours, images, targets, loss_names, loss_tol, grad_rtol) -> dict:
    """One training step of ``ours`` and of torchvision's ``tv`` (same weights) gives the same losses and gradients.

    In: ``tv`` and ``ours``, a torchvision detection model and ours holding the same float64 weights;
    ``images``, a list of (H, W, 3) float64 arrays; ``targets``, one dict of NumPy arrays per image
    (``boxes``, ``labels``, and ``masks`` for a model with a mask branch); ``loss_names``, the exact set
    of losses both must return, or None to require only that both return the same ones; ``loss_tol``,
    the largest absolute difference allowed per loss; ``grad_rtol``, the largest relative error
    (:func:`tests.helpers.assert_rel`) allowed per parameter gradient.

    Both run in train mode; ours samples with ``rng=0`` and torchvision replays its sampled anchors
    and RoIs (:func:`replay_sampling`). Each loss must be finite and within ``loss_tol``; after
    ``backward`` of both sums, the trainable parameters' names must agree in order and every gradient
    be within ``grad_rtol``. Both models are put back in eval mode, also when a check fails; their
    gradients are left as computed.

    Out: our losses, a dict of name -> scalar :class:`mrcnn_np.Tensor`, for the caller's own checks
    (e.g. ``losses["loss_box_reg"].item() > 0``).
    """
    try:
        ours.train()
        tv.train()
        ours.zero_grad()
        losses, sampled = ours(images, targets, rng=0, return_sampled=True)
        replay_sampling(tv, sampled)
        tv.zero_grad()
        tv_losses = tv(to_torch(images, np.float64), [{k: torch.from_numpy(v) for k, v in t.items()} for t in targets])
        assert set(losses) == set(tv_losses), f"losses: ours {sorted(losses)}, torchvision's {sorted(tv_losses)}"
        if loss_names is not None:
            assert set(losses) == set(loss_names), f"losses {sorted(losses)}, expected {sorted(loss_names)}"
        for name in losses:
            ours_loss, tv_loss = losses[name].item(), tv_losses[name].item()
            assert np.isfinite(ours_loss), f"{name}: {ours_loss}"
            assert abs(ours_loss - tv_loss) <= loss_tol, f"{name}: ours {ours_loss!r}, torchvision's {tv_loss!r}"
        sum(losses.values(), Tensor(0.0)).backward()
        sum(tv_losses.values()).backward()
        theirs = dict(tv.named_parameters())
        trainable = [n for n, p in ours.named_parameters() if p.requires_grad]
        tv_trainable = [n for n, p in theirs.items() if p.requires_grad]
        assert trainable == tv_trainable, f"trainable parameters: ours {trainable}, torchvision's {tv_trainable}"
        for name in trainable:
            p = dict(ours.named_parameters())[name]
            assert p.grad is not None, name
            assert_rel(p.grad, theirs[name].grad.numpy(), grad_rtol, name)
    finally:
        ours.eval()
        tv.eval()
    return losses


def assert_state_dict_round_trip(config, tv) -> None:
    """Our model of ``config`` -> torchvision's ``tv`` (of the same architecture) -> a second model of
    ours gives back every key of the state dict, bit for bit and in the same dtype.

    In: ``config``, a :class:`~mrcnn_np.config.MaskRCNNConfig`; ``tv``, a torchvision module whose state
    dict has exactly our keys. The first model's weights are drawn with seed 7, its buffers (norm
    statistics, BatchNorm counters) set to random values, so nothing loads by coincidence; the second is
    drawn with seed 8. Out: nothing; fails naming the first key that differs."""
    from mrcnn_np.convert import export_to_torchvision, load_torchvision_state_dict, state_dict_from_torch
    from mrcnn_np.model.mask_rcnn import MaskRCNN

    ours = MaskRCNN(config, rng=7)
    for name, b in ours.named_buffers():
        if name.endswith("num_batches_tracked"):
            b[...] = np.random.default_rng(len(name)).integers(0, 1000)
        else:
            b[...] = np.random.default_rng(b.size).uniform(0.5, 1.5, b.shape)
    export_to_torchvision(ours, tv)
    back = MaskRCNN(config, rng=8)
    load_torchvision_state_dict(back, state_dict_from_torch(tv))
    assert list(back.state_dict()) == list(tv.state_dict()), "the keys differ from torchvision's"
    for k, v in ours.state_dict().items():
        got = back.state_dict()[k]
        assert got.dtype == v.dtype and np.array_equal(got, v), f"{k}: not bit-identical after the round trip"
