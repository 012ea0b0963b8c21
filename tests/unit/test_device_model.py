"""The tiny Mask R-CNN on a device, under the strict CuPy stand-in (:mod:`tests.fake_cupy`):
``model.to("cuda")``, predict, loss, backward, an SGD step, checkpoints saved on one device and
resumed on the other, evaluation and the CLI -- each equal to the NumPy run, bit for bit.

Both runs use the NumPy reference of every kernel (``default_impl("numpy")``): numba's CPU
kernels differ from it in the last bits, and numba.cuda kernels cannot take the stand-in's
arrays. The stand-in refuses what CuPy refuses (implicit host conversion, host/device mixing),
so a run that completes has no silent host round-trip on the model's path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrcnn_np import cli
from mrcnn_np.backend import default_impl, to_numpy
from mrcnn_np.config import tiny
from mrcnn_np.convert import load_model
from mrcnn_np.data.shapes import shapes_dataset, write_shapes_dataset
from mrcnn_np.evaluate import evaluate_model
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.nn.fused import fusion
from mrcnn_np.train import TrainRecipe, make_optimizer, read_log, train, train_step

SIZE = 64


@pytest.fixture(autouse=True)
def numpy_kernels():
    with default_impl("numpy"):
        yield


@pytest.fixture(scope="module")
def dataset():
    return shapes_dataset(4, seed=0, height=SIZE, width=SIZE, max_instances=2)


def small_model(dtype=np.float32):
    return MaskRCNN(tiny(min_size=SIZE, max_size=SIZE, dtype=dtype), rng=0)


def host_state(model):
    return {k: to_numpy(v).copy() for k, v in model.state_dict().items()}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert type(a[k]) is type(b[k]) is np.ndarray, k  # host arrays on both sides
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_to_moves_parameters_and_buffers_and_back(fake_cupy):
    model = small_model()
    assert model.device == "cpu"
    before = host_state(model)
    model.to("cuda")
    assert model.device == "cuda"
    assert all(type(v) is fake_cupy.ndarray for v in model.state_dict().values())
    model.to("cpu")
    assert model.device == "cpu" and all(type(v) is np.ndarray for v in model.state_dict().values())
    assert_same(host_state(model), before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_on_the_device_equals_the_host(dtype, dataset, fake_cupy):
    images = [dataset[i][0] for i in range(2)] + [dataset[2][0][:48].astype(np.float64) / 255]  # another size
    host = small_model(dtype).eval()([im for im in images])
    model = small_model(dtype).to("cuda").eval()
    with fake_cupy.counting() as counts:
        device = model(images)
    assert counts.to_host >= 1  # the outputs came back through the named transfer point
    assert len(host) == len(device) == 3
    for a, b in zip(host, device, strict=True):
        assert_same(a, b)


def test_loss_backward_and_step_on_the_device_equal_the_host(dataset, fake_cupy):
    images, targets = zip(*(dataset[i] for i in range(2)), strict=True)
    results = []
    for device in ("cpu", "cuda"):
        model = small_model().to(device).train()
        recipe = TrainRecipe(iterations=1, batch_size=2, lr=0.01, warmup_iters=0, milestones=())
        optimizer, _ = make_optimizer(model, recipe)
        losses = train_step(model, optimizer, list(images), list(targets), rng=np.random.default_rng(3))
        grads = {n: to_numpy(p.grad) for n, p in model.named_parameters() if p.grad is not None}
        buffers = {str(k): to_numpy(s["momentum_buffer"]) for k, s in enumerate(optimizer.state.values())}
        results.append((losses, grads, host_state(model), buffers))
    (l_cpu, g_cpu, s_cpu, b_cpu), (l_dev, g_dev, s_dev, b_dev) = results
    assert l_cpu == l_dev and all(np.isfinite(v) for v in l_cpu.values())
    assert len(g_cpu) > 50
    assert_same(g_cpu, g_dev)
    assert_same(s_cpu, s_dev)
    assert_same(b_cpu, b_dev)


@pytest.mark.parametrize("first,second", [("cuda", "cpu"), ("cpu", "cuda")])
def test_checkpoints_are_device_neutral(first, second, dataset, tmp_path, fake_cupy):
    """Two iterations on one device, resumed for two more on the other == four on the host."""
    recipe = TrainRecipe(iterations=4, batch_size=2, lr=0.01, warmup_iters=1, milestones=(3,), seed=2,
                         checkpoint_every=2)
    straight = small_model()
    train(straight, dataset, recipe, tmp_path / "straight", progress=False)

    half = TrainRecipe(**{**recipe.__dict__, "iterations": 2})
    train(small_model(), dataset, half, tmp_path / "split", device=first, progress=False)
    resumed = MaskRCNN(tiny(min_size=SIZE, max_size=SIZE), rng=7)
    train(resumed, dataset, recipe, tmp_path / "split", resume=tmp_path / "split", device=second, progress=False)
    assert resumed.device == second
    assert_same(host_state(straight), host_state(resumed))
    assert [r["loss"] for r in read_log(tmp_path / "split")] == [r["loss"] for r in read_log(tmp_path / "straight")]
    assert_same(host_state(load_model(tmp_path / "split" / "model.safetensors")), host_state(straight))


def test_evaluation_on_the_device_equals_the_host(dataset, fake_cupy, capsys):
    host_metrics, _ = evaluate_model(small_model(), dataset, progress=False, verbose=False)
    device_metrics, outputs = evaluate_model(small_model().to("cuda"), dataset, progress=False, verbose=False)
    assert host_metrics == device_metrics
    assert all(type(v) is np.ndarray for out in outputs for v in out.values())


def test_the_cli_runs_on_the_device(tmp_path, fake_cupy, capsys):
    data = write_shapes_dataset(tmp_path / "data", 2, seed=0, height=SIZE, width=SIZE, max_instances=2)
    common = ["--iterations", "1", "--batch-size", "2", "--min-size", str(SIZE), "--milestones", "1", "--no-progress"]
    for device in ("cpu", "cuda"):
        assert cli.main(["train", str(data), *common, "--out", str(tmp_path / device), "--device", device]) == 0
    a, b = (load_model(tmp_path / d / "model.safetensors") for d in ("cpu", "cuda"))
    assert_same(host_state(a), host_state(b))
    image = data.parent / "images" / "000001.png"
    printed = []
    for device in ("cpu", "cuda"):
        capsys.readouterr()
        assert cli.main(["predict", str(image), "--weights", str(tmp_path / "cpu" / "model.safetensors"),
                         "--out", str(tmp_path / f"{device}.png"), "--score-thresh", "0", "--device", device]) == 0
        printed.append(capsys.readouterr().out.replace(f"{device}.png", "FIG"))
    assert printed[0] == printed[1]
    json.loads((tmp_path / "cuda" / "log.jsonl").read_text().splitlines()[0])


def test_device_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    data = write_shapes_dataset(tmp_path / "data", 1, seed=0, height=SIZE, width=SIZE, max_instances=1)
    status = cli.main(["train", str(data), "--iterations", "1", "--out", str(tmp_path / "run"), "--no-progress",
                       "--device", "cuda"])
    err = capsys.readouterr().err
    assert status == 2 and "--device cuda needs CuPy and an NVIDIA GPU" in err and "Traceback" not in err


# --- the GPU path: numba.cuda kernels as the stand-in sees them (tests/fake_kernels.py) -------------
# Device-to-host syncs of the tiny model on two 64x64 images, measured on 2026-12-04 with the GPU
# path (kernels included) under the stand-in: 28 per predict (12 of them the outputs' copies to the
# host), 44 per training step (loss, backward, SGD). A regression guard: lower them when you remove
# syncs, never raise them without a reason.
PREDICT_SYNCS, STEP_SYNCS = 28, 44


def test_the_gpu_path_equals_the_host_and_keeps_to_its_sync_budget(dataset, fake_gpu):
    images, targets = (list(t) for t in zip(*(dataset[i] for i in range(2)), strict=True))
    # the numba kernels on the host, the stand-in CUDA kernels on the device; batch norm's host kernel
    # (fewer passes, float64 sums) has no device version, the device runs its specification, and so
    # does the host here (tests/kernels/test_batch_norm_kernels.py compares the two)
    with default_impl("numpy", ops=("batch_norm",)):
        host_model, device_model = small_model(), small_model().to("cuda")
        with fusion(False):  # the host folds norms into convs (mrcnn_np.nn.fused); the GPU path does not
            host = host_model.eval()(images)
        with fake_gpu.counting() as first:
            device = device_model.eval()(images)
        with fake_gpu.counting() as again:
            device_model(images)
        for a, b in zip(host, device, strict=True):
            assert_same(a, b)
        assert first.syncs <= PREDICT_SYNCS
        assert again.syncs == first.syncs and again.to_device < first.to_device  # taps and anchors are cached

        results = []
        for model in (host_model, device_model):
            model.train()
            optimizer, _ = make_optimizer(model, TrainRecipe(iterations=1, batch_size=2, warmup_iters=0,
                                                             milestones=()))
            with fake_gpu.counting() as step:
                losses = train_step(model, optimizer, images, targets, rng=np.random.default_rng(1))
            results.append((losses, host_state(model), step.syncs))
    assert results[0][0] == results[1][0]
    assert_same(results[0][1], results[1][1])
    assert results[0][2] == 0 and results[1][2] <= STEP_SYNCS  # the host run touches no device
