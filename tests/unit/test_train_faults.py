"""Faults around a training run: damaged checkpoints and logs, another configuration, a run folder
in the way, a full disk, Ctrl-C. Each must stop with a message naming the file, or be repaired
so that the resumed run still equals an uninterrupted one bit for bit."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest

from mrcnn_np.config import tiny
from mrcnn_np.convert import WeightsFileError, load_model
from mrcnn_np.data.shapes import shapes_dataset
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.train import (
    CheckpointMismatchError,
    CheckpointWarning,
    RunExistsError,
    TrainingInterrupted,
    TrainRecipe,
    latest_checkpoint,
    read_log,
    train,
)

SIZE = 64


@pytest.fixture(scope="module")
def dataset():
    return shapes_dataset(6, seed=0, height=SIZE, width=SIZE, max_instances=2)


def small_model(seed=0, **config):
    return MaskRCNN(tiny(min_size=SIZE, max_size=SIZE, **config), rng=seed)


def recipe(iterations, **kw):
    settings = dict(iterations=iterations, batch_size=2, lr=0.01, warmup_iters=2, milestones=(2,), seed=5,
                    checkpoint_every=1)
    return TrainRecipe(**{**settings, **kw})


def state(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory):
    """The weights and log of an uninterrupted 3-iteration run."""
    out = tmp_path_factory.mktemp("straight")
    model = small_model()
    train(model, dataset, recipe(3), out, progress=False)
    return state(model), read_log(out)


def assert_same_run(model, out, straight):
    weights, log = straight
    for k, v in state(model).items():
        np.testing.assert_array_equal(v, weights[k], err_msg=k)
    got = read_log(out)
    assert [r["iteration"] for r in got] == [1, 2, 3]
    assert [r["loss"] for r in got] == [r["loss"] for r in log]


# --- damaged checkpoints and logs ------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["state.json", "model.safetensors", "optimizer.safetensors"])
def test_a_truncated_checkpoint_falls_back_to_the_previous_intact_one(damage, dataset, tmp_path, straight):
    train(small_model(), dataset, recipe(2), tmp_path, progress=False)  # checkpoints at 1 and 2
    path = tmp_path / "checkpoints" / "iter_000002" / damage
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(CheckpointWarning, match=f"damaged checkpoint.*iter_000002.*{damage}"):
        assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "iter_000001"
    resumed = small_model(seed=9)
    with pytest.warns(CheckpointWarning):
        train(resumed, dataset, recipe(3), tmp_path, resume=tmp_path, progress=False)
    assert_same_run(resumed, tmp_path, straight)


def test_a_damaged_checkpoint_asked_for_by_name_is_an_error(dataset, tmp_path):
    train(small_model(), dataset, recipe(1), tmp_path, progress=False)
    ckpt = tmp_path / "checkpoints" / "iter_000001"
    (ckpt / "state.json").write_text('{"format": 1, "iterat')
    with pytest.raises(ValueError, match=r"iter_000001.*state.json: unreadable"):
        latest_checkpoint(ckpt)
    with pytest.raises(ValueError, match="every checkpoint is damaged"), pytest.warns(CheckpointWarning):
        latest_checkpoint(tmp_path)


def test_a_partial_last_log_line_is_repaired_on_resume(dataset, tmp_path, straight):
    train(small_model(), dataset, recipe(2), tmp_path, progress=False)
    log = tmp_path / "log.jsonl"
    log.write_text(log.read_text() + '{"iteration": 3, "lr": 0.00')  # a kill in the middle of a write
    with pytest.raises(ValueError, match=r"log.jsonl, line 3: not a log record"):
        read_log(tmp_path)
    assert [r["iteration"] for r in read_log(tmp_path, partial_last_line="drop")] == [1, 2]
    resumed = small_model(seed=9)
    train(resumed, dataset, recipe(3), tmp_path, resume=tmp_path, progress=False)
    assert_same_run(resumed, tmp_path, straight)
    assert log.read_text().endswith("}\n")


def test_a_damaged_line_inside_the_log_is_named(dataset, tmp_path):
    train(small_model(), dataset, recipe(2), tmp_path, progress=False)
    log = tmp_path / "log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0][:10], lines[1]]) + "\n")
    with pytest.raises(ValueError, match=r"log.jsonl, line 1"):
        train(small_model(), dataset, recipe(3), tmp_path, resume=tmp_path, progress=False)


def test_leftovers_of_an_interrupted_write_are_cleared_on_resume(dataset, tmp_path, straight):
    train(small_model(), dataset, recipe(2), tmp_path, progress=False)
    (tmp_path / "checkpoints" / ".iter_000003.abc").mkdir()
    (tmp_path / "model.safetensors.tmp").write_bytes(b"half")
    resumed = small_model(seed=9)
    train(resumed, dataset, recipe(3), tmp_path, resume=tmp_path, progress=False)
    assert_same_run(resumed, tmp_path, straight)
    assert not list((tmp_path / "checkpoints").glob(".*")) and not (tmp_path / "model.safetensors.tmp").exists()


# --- another configuration, a run in the way --------------------------------------------------------
def test_resume_refuses_a_checkpoint_of_another_configuration(dataset, tmp_path):
    train(small_model(), dataset, recipe(1), tmp_path, progress=False)
    other = small_model(box_score_thresh=0.25)
    with pytest.raises(CheckpointMismatchError, match=r"different model configuration: box_score_thresh 0.05 "
                                                      r"\(this model: 0.25\)"):
        train(other, dataset, recipe(2), tmp_path, resume=tmp_path, progress=False)


def test_a_folder_holding_a_run_is_not_trained_into_again(dataset, tmp_path):
    train(small_model(), dataset, recipe(2), tmp_path, progress=False)
    before = (tmp_path / "log.jsonl").read_text()
    with pytest.raises(RunExistsError, match=r"already holds a run \(log.jsonl, checkpoints, model.safetensors\).*"
                                             r"--resume.*--overwrite"):
        train(small_model(), dataset, recipe(1), tmp_path, progress=False)
    assert (tmp_path / "log.jsonl").read_text() == before  # untouched
    (tmp_path / "notes.txt").write_text("mine")
    train(small_model(), dataset, recipe(1), tmp_path, overwrite=True, progress=False)
    assert [r["iteration"] for r in read_log(tmp_path)] == [1]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_000001"]  # no mix of runs
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the run's own files go
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        train(small_model(), dataset, recipe(1), tmp_path / "file", progress=False)


# --- a full disk, Ctrl-C ------------------------------------------------------------------------------
def test_a_full_disk_names_the_last_complete_checkpoint(dataset, tmp_path, monkeypatch):
    import mrcnn_np.train as train_module

    real, calls = train_module.save_safetensors, []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # the checkpoint of iteration 1 (model + optimizer) fits, the next does not
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "save_safetensors", full_disk)
    monkeypatch.setattr("mrcnn_np.convert.save_safetensors", full_disk)
    with pytest.raises(OSError, match=r"No space left on device.*last complete checkpoint is .*iter_000001") as e:
        train(small_model(), dataset, recipe(3), tmp_path, progress=False)
    assert e.value.errno == errno.ENOSPC
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_000001"]  # no half checkpoint


def test_ctrl_c_names_the_last_checkpoint_and_resume_goes_on(dataset, tmp_path, monkeypatch, straight):
    import mrcnn_np.train as train_module

    real, calls = train_module.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    with pytest.raises(TrainingInterrupted, match=r"after iteration 2; the last checkpoint is .*iter_000002") as e:
        train(small_model(), dataset, recipe(3), tmp_path, progress=False)
    assert (e.value.iteration, e.value.checkpoint.name) == (2, "iter_000002")
    assert isinstance(e.value, KeyboardInterrupt)
    monkeypatch.undo()
    resumed = small_model(seed=9)
    train(resumed, dataset, recipe(3), tmp_path, resume=tmp_path, progress=False)
    assert_same_run(resumed, tmp_path, straight)


# --- weights files --------------------------------------------------------------------------------------
def test_truncated_and_pickled_weights_files_are_named(dataset, tmp_path):
    import pickle

    result = train(small_model(), dataset, recipe(1), tmp_path / "run", progress=False)
    cut = tmp_path / "cut.safetensors"
    data = result.weights.read_bytes()
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightsFileError, match=r"cut.safetensors: not a complete .safetensors file"):
        load_model(cut)
    pickled = tmp_path / "model.pth"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(WeightsFileError, match=r"model.pth: a torch.save file \(pickle\).*mrcnn-np convert"):
        load_model(pickled)
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors: no such weights file"):
        load_model(tmp_path / "nowhere.safetensors")
    shutil.copy(result.weights, tmp_path / "bad_config.safetensors")
    from mrcnn_np.convert import CONFIG_KEY, load_safetensors, read_metadata, save_safetensors

    metadata = read_metadata(result.weights) | {CONFIG_KEY: json.dumps({"num_classes": 4, "colour": "red"})}
    save_safetensors(load_safetensors(result.weights), tmp_path / "bad_config.safetensors", metadata)
    with pytest.raises(WeightsFileError, match=r"configuration stored in this file is unusable.*colour"):
        load_model(tmp_path / "bad_config.safetensors")


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_a_seed_must_be_a_nonnegative_integer(seed):
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        TrainRecipe(seed=seed)
