"""The training loop without torch: exact resume, log and checkpoint files, the NaN stop, recipe checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrcnn_np import Tensor
from mrcnn_np.config import tiny
from mrcnn_np.convert import load_model, read_metadata
from mrcnn_np.data.shapes import shapes_dataset
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.train import (
    LOSS_NAMES,
    NonFiniteLossError,
    TrainRecipe,
    latest_checkpoint,
    load_checkpoint,
    read_log,
    train,
)

SIZE = 64


@pytest.fixture(scope="module")
def dataset():
    return shapes_dataset(6, seed=0, height=SIZE, width=SIZE, max_instances=2)


def small_model(seed=0):
    return MaskRCNN(tiny(min_size=SIZE, max_size=SIZE), rng=seed)


def recipe(iterations, **kw):
    settings = dict(iterations=iterations, batch_size=2, lr=0.01, warmup_iters=2, milestones=(2,), seed=5)
    return TrainRecipe(**{**settings, **kw})


def state(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def test_resume_reproduces_an_uninterrupted_run_exactly(dataset, tmp_path):
    """2N iterations == N, a fresh process-like restart from the checkpoint, then N more (N = 2)."""
    straight = small_model()
    train(straight, dataset, recipe(4), tmp_path / "straight", progress=False)

    first = small_model()
    train(first, dataset, recipe(2), tmp_path / "split", progress=False)
    resumed = small_model(seed=99)  # different initial weights: everything must come from the checkpoint
    train(resumed, dataset, recipe(4), tmp_path / "split", resume=tmp_path / "split", progress=False)

    a, b = state(straight), state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert any(not np.array_equal(a[k], state(small_model())[k]) for k in a)  # it did train
    log_a, log_b = read_log(tmp_path / "straight"), read_log(tmp_path / "split")
    assert [r["iteration"] for r in log_b] == [1, 2, 3, 4]
    for ra, rb in zip(log_a, log_b, strict=True):
        assert {k: ra[k] for k in ("lr", "loss", *LOSS_NAMES)} == {k: rb[k] for k in ("lr", "loss", *LOSS_NAMES)}


def test_files_of_a_run(dataset, tmp_path):
    model = small_model()
    result = train(model, dataset, recipe(3, checkpoint_every=2), tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_000002", "iter_000003"]
    assert latest_checkpoint(tmp_path) == result.checkpoint == tmp_path / "checkpoints" / "iter_000003"
    assert sorted(p.name for p in result.checkpoint.iterdir()) == ["model.safetensors", "optimizer.safetensors",
                                                                   "state.json"]
    saved = json.loads((result.checkpoint / "state.json").read_text())
    assert saved["iteration"] == 3 and saved["recipe"]["checkpoint_every"] == 2
    records = read_log(tmp_path)
    assert [r["iteration"] for r in records] == [1, 2, 3]
    assert set(records[0]) == {"iteration", "lr", "loss", *LOSS_NAMES, "seconds"}
    assert all(np.isfinite(r["loss"]) and abs(r["loss"] - sum(r[k] for k in LOSS_NAMES)) < 1e-4 for r in records)
    # warm-up from lr * 0.001 over 2 iterations, then lr, then lr / 10 from iteration 3
    np.testing.assert_allclose([r["lr"] for r in records], [1e-5, 0.01 * (0.001 + 0.999 / 2), 0.001])
    # the final weights rebuild the model, with the class names
    again = load_model(result.weights)
    for k, v in state(model).items():
        np.testing.assert_array_equal(again.state_dict()[k], v)
    assert json.loads(read_metadata(result.weights)["classes"]) == ["background", "square", "circle", "triangle"]
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary folders left


def test_a_nan_loss_stops_training_before_the_update(dataset, tmp_path, monkeypatch):
    model = small_model()
    loss = model.loss
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        losses = loss(*args, **kwargs)
        if len(calls) == 3:
            losses["loss_box_reg"] = losses["loss_box_reg"] * Tensor(np.float32(np.nan))
        return losses

    monkeypatch.setattr(model, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"iteration 3: loss_box_reg = nan \(losses: .*lower learning rate") as e:
        train(model, dataset, recipe(5, checkpoint_every=2), tmp_path, progress=False)
    assert e.value.iteration == 3 and np.isnan(e.value.losses["loss_box_reg"])
    assert "iter_000002" in str(e.value)  # where to resume from
    # no update from the bad step: the parameters equal the checkpoint of iteration 2
    before = small_model(seed=1)
    load_checkpoint(tmp_path, before)
    saved = dict(before.named_parameters())
    for k, p in model.named_parameters():
        np.testing.assert_array_equal(saved[k].data, p.data, err_msg=k)
    assert [r["iteration"] for r in read_log(tmp_path)] == [1, 2]


def test_resume_refuses_a_different_recipe(dataset, tmp_path):
    train(small_model(), dataset, recipe(2), tmp_path, progress=False)
    with pytest.raises(ValueError, match="different recipe.*lr"):
        train(small_model(), dataset, recipe(4, lr=0.5), tmp_path, resume=tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(small_model(), dataset, recipe(4), tmp_path, resume=tmp_path / "nowhere", progress=False)


@pytest.mark.parametrize("bad", [dict(iterations=0), dict(batch_size=0), dict(lr=-1.0), dict(lr=float("nan")),
                                 dict(flip_prob=2.0), dict(warmup_iters=-1)])
def test_bad_recipes_are_named(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        TrainRecipe(**bad)


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_default(dataset, tmp_path):
    """Settings added later (the ablation switches) are absent from older checkpoints: they had their
    defaults then, so such a checkpoint resumes a default model and is refused by a switched one."""
    from mrcnn_np.convert import CONFIG_KEY, load_safetensors, save_safetensors
    from mrcnn_np.train import CheckpointMismatchError

    train(small_model(), dataset, recipe(2), tmp_path, progress=False)
    weights = latest_checkpoint(tmp_path) / "model.safetensors"
    metadata = read_metadata(weights)
    config = json.loads(metadata[CONFIG_KEY])
    new = ("mask_loss", "class_agnostic_masks", "roi_pooler", "mask_head", "mask_mlp_dim")
    metadata[CONFIG_KEY] = json.dumps({k: v for k, v in config.items() if k not in new})
    save_safetensors(load_safetensors(weights), weights, metadata)
    with pytest.raises(CheckpointMismatchError, match="mask_loss 'sigmoid' \\(this model: 'softmax'\\)"):
        switched = MaskRCNN(tiny(min_size=SIZE, max_size=SIZE, mask_loss="softmax"), rng=0)
        train(switched, dataset, recipe(4), tmp_path, resume=tmp_path, progress=False)
    result = train(small_model(), dataset, recipe(4), tmp_path, resume=tmp_path, progress=False)
    assert [r["iteration"] for r in result.history] == [3, 4]
