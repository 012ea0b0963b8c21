"""Training against torchvision + torch.optim, and the torchvision twin of any configuration.

The acceptance criterion of the training issue: three SGD steps on the same batch, from the same
weights, with the same sampled anchors and RoIs (ours drawn, replayed into torchvision), give
parameters and BatchNorm statistics equal to torchvision + torch.optim's within 1e-6 (float64),
and the same losses at every step. The recipe (warm-up over 2 steps, a decay at step 2) runs
both schedules' warm-up and decay within the 3 steps.

Configurations: ``tiny`` (trainable BatchNorm2d, all layers trainable), ``tiny`` with
FrozenBatchNorm2d and 3 trainable layers, and the default ResNet-50-FPN (slow). The twins come
from :func:`mrcnn_np.reference.twins.twin_pair`; the tests below it check that the twin has exactly our
state-dict keys, shapes and frozen parameters, and predicts what we predict.
"""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np.config import MaskRCNNConfig, tiny
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.reference.sampling import replay_sampling
from mrcnn_np.reference.training import torchvision_optimizer, torchvision_train_step
from mrcnn_np.reference.twins import targets_to_torch, to_torch, torchvision_model, twin_pair
from mrcnn_np.train import TrainRecipe, make_optimizer, train_step
from tests.helpers import assert_rel, rel_err
from tests.reference.test_mask_rcnn import (
    NUM_CLASSES,
    assert_float64_detections_identical,
    run_inference,
    shapes_targets,
)

STEPS = 3
RECIPE = TrainRecipe(iterations=STEPS, batch_size=2, lr=0.01, momentum=0.9, weight_decay=1e-4, warmup_iters=2,
                     warmup_factor=0.1, milestones=(2,), gamma=0.1)
EXPECTED_LRS = [0.001, 0.0055, 0.001, 0.001]  # lr of steps 0, 1, 2 and after: warm-up 0.1 -> 1, then x0.1 at 2

# num_classes 5: shapes_targets draws labels 1..4
CONFIGS = [
    pytest.param(tiny(num_classes=NUM_CLASSES, dtype=np.float64), id="tiny"),
    pytest.param(tiny(num_classes=NUM_CLASSES, dtype=np.float64, frozen_batch_norm=True, trainable_backbone_layers=3),
                 id="tiny-frozen-bn"),
    pytest.param(MaskRCNNConfig(dtype=np.float64, min_size=320, max_size=512, num_classes=NUM_CLASSES),
                 id="resnet50", marks=pytest.mark.slow),
]


def assert_same_state(ours, tv, what):
    """Every parameter and buffer (BatchNorm statistics, num_batches_tracked) of both models."""
    theirs = tv.state_dict()
    mine = ours.state_dict()
    assert list(mine) == list(theirs)
    for name, value in mine.items():
        ref = theirs[name].numpy()
        if name.endswith("num_batches_tracked"):
            assert int(value) == int(ref), f"{what}: {name}"
        else:
            assert_rel(value, ref, 1e-6, f"{what}: {name}")


@pytest.mark.parametrize("config", CONFIGS)
def test_three_sgd_steps_equal_torch_optim(config):
    tv, ours = twin_pair(config)
    images, targets = shapes_targets(np.random.default_rng(3))
    tv_images, tv_targets = to_torch(images, np.float64), targets_to_torch(targets)
    optimizer, scheduler = make_optimizer(ours, RECIPE)
    tv_optimizer, tv_scheduler = torchvision_optimizer(tv, RECIPE)
    trainable = [n for n, p in ours.named_parameters() if p.requires_grad]
    assert trainable == [n for n, p in tv.named_parameters() if p.requires_grad]
    before = {k: np.array(v, copy=True) for k, v in ours.state_dict().items()}
    lrs, tv_lrs = [], []
    ours.train()
    tv.train()
    for step in range(STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])
        tv_lrs.append(tv_optimizer.param_groups[0]["lr"])
        losses, sampled = train_step(ours, optimizer, images, targets, rng=step, return_sampled=True)
        replay_sampling(tv, sampled)
        tv_losses = torchvision_train_step(tv, tv_optimizer, tv_images, tv_targets)
        scheduler.step()
        tv_scheduler.step()
        assert set(losses) == set(tv_losses)
        for name, value in losses.items():
            assert abs(value - tv_losses[name]) <= 1e-8, f"step {step}: {name} {value} != {tv_losses[name]}"
        assert_same_state(ours, tv, f"after step {step}")
    lrs.append(optimizer.param_groups[0]["lr"])
    tv_lrs.append(tv_optimizer.param_groups[0]["lr"])
    # torch's chained schedulers multiply step by step, ours is closed form: equal to the last bit or two
    np.testing.assert_allclose(lrs, tv_lrs, rtol=1e-15)
    np.testing.assert_allclose(lrs, EXPECTED_LRS, rtol=1e-15)
    # the comparison is not vacuous: every trainable parameter moved, the median one by > 100x the
    # tolerance (relative to its size); the frozen ones did not move at all
    change = {n: rel_err(ours.state_dict()[n], before[n]) for n in trainable}
    assert min(change.values()) > 0 and np.median(list(change.values())) > 1e-4, change
    for name, p in ours.named_parameters():
        if not p.requires_grad:
            np.testing.assert_array_equal(p.data, before[name], err_msg=name)
    ours.eval()


@pytest.mark.parametrize("config", [tiny(), MaskRCNNConfig()], ids=["tiny", "default"])
def test_twin_has_our_state_dict_and_frozen_layers(config):
    tv = torchvision_model(config)
    ours = MaskRCNN(config)
    theirs = tv.state_dict()
    assert list(theirs) == list(ours.state_dict())
    for name, value in ours.state_dict().items():
        assert tuple(theirs[name].shape) == value.shape, name
        assert str(theirs[name].dtype).removeprefix("torch.") == value.dtype.name, name
    assert [n for n, p in tv.named_parameters() if p.requires_grad] == \
        [n for n, p in ours.named_parameters() if p.requires_grad]


def test_twin_inference_float64_identical():
    tv, ours = twin_pair(tiny(num_classes=NUM_CLASSES, dtype=np.float64))
    images, _ = shapes_targets(np.random.default_rng(5))
    assert_float64_detections_identical(*run_inference(tv, ours, images, np.float64), images)


def test_twin_takes_the_poolers_settings():
    config = tiny(num_classes=NUM_CLASSES, dtype=np.float64, roi_featmap_names=("0", "1", "2"), box_roi_output_size=5,
                  mask_roi_output_size=10, roi_sampling_ratio=1)
    tv, ours = twin_pair(config)
    for pool in (tv.roi_heads.box_roi_pool, tv.roi_heads.mask_roi_pool):
        assert pool.featmap_names == ["0", "1", "2"] and pool.sampling_ratio == 1
    assert tv.roi_heads.box_roi_pool.output_size == (5, 5) and tv.roi_heads.mask_roi_pool.output_size == (10, 10)
    assert tv.roi_heads.box_head.fc6.in_features == config.fpn_channels * 5 * 5
    images, _ = shapes_targets(np.random.default_rng(5))
    assert_float64_detections_identical(*run_inference(tv, ours, images, np.float64), images)
