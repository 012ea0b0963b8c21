"""SIGKILL at random moments during a tiny training run, then resume, until it finishes: the final
weights equal an uninterrupted run's bit for bit, and the log holds each iteration exactly once.

A kill can land anywhere: during start-up, mid-iteration, while a log line or a checkpoint is
being written, or while the final weights are. Each run is its own process (``RUN`` below),
which resumes when ``out`` holds a checkpoint and starts again (``overwrite=True``) when it holds
only the remains of a run killed before its first checkpoint -- what a user does with
``mrcnn-np train --resume`` / ``--overwrite``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mrcnn_np.convert import load_safetensors
from mrcnn_np.train import read_log

ITERATIONS = 6
RUN = f"""
import sys
from pathlib import Path
from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import shapes_dataset
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.train import TrainRecipe, train

out = Path(sys.argv[1])
resume = out if list((out / "checkpoints").glob("iter_*/state.json")) else None
dataset = shapes_dataset(6, seed=0, height=64, width=64, max_instances=2)
model = MaskRCNN(tiny(min_size=64, max_size=64), rng=0)
recipe = TrainRecipe(iterations={ITERATIONS}, batch_size=2, lr=0.01, warmup_iters=2, milestones=(4,), seed=5,
                     checkpoint_every=1)
train(model, dataset, recipe, out, resume=resume, overwrite=resume is None, progress=False)
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start(out):
    return subprocess.Popen([sys.executable, "-c", RUN, str(out)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final weights of the run, never killed, and how long it took."""
    out = tmp_path_factory.mktemp("straight")
    t0 = time.perf_counter()
    finish(start(out))
    return load_safetensors(out / "model.safetensors"), time.perf_counter() - t0


@pytest.mark.parametrize("trial", range(4))
def test_sigkill_then_resume_gives_the_uninterrupted_run(trial, uninterrupted, tmp_path):
    weights, seconds = uninterrupted
    rng = np.random.default_rng(trial)
    kills = 0
    for attempt in range(4):  # up to 4 kills, at moments spread over a whole run (start-up included)
        process = start(tmp_path)
        try:  # the first kill comes before an uninterrupted run would end; later ones may come too late
            process.wait(timeout=rng.uniform(0.05, 0.9 if attempt == 0 else 1.3) * seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            if process.returncode == 0:  # it ended on its own between the timeout and the signal
                break
            assert process.returncode == -signal.SIGKILL
            kills += 1
            continue
        process.communicate()
        assert process.returncode == 0
        break
    else:
        finish(start(tmp_path))  # the last restart, left to finish
    assert kills >= 1
    got = load_safetensors(tmp_path / "model.safetensors")
    assert got.keys() == weights.keys()
    for k in weights:
        np.testing.assert_array_equal(got[k], weights[k], err_msg=k)
    assert [r["iteration"] for r in read_log(tmp_path)] == list(range(1, ITERATIONS + 1))
