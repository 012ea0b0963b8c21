"""Training: SGD with momentum and weight decay, linear warm-up then multi-step decay, a log
line per iteration, atomic checkpoints, exact resume, and a clear stop on a NaN loss.

    recipe = TrainRecipe(iterations=1000, batch_size=4, lr=0.02, milestones=(750, 920))
    result = train(model, dataset, recipe, out_dir="runs/shapes")
    result = train(model, dataset, recipe, out_dir="runs/shapes", resume="runs/shapes")  # go on

One iteration (:func:`train_step`)::

    images, targets = loader.batch(t)                    # B images, horizontally flipped at random
    losses = model.loss(images, targets, rng_t)          # the five Mask R-CNN losses (dict)
    check every loss is finite                           # else NonFiniteLossError, before any update
    sum(losses).backward(); optimizer.step(); scheduler.step()

This is torchvision's detection recipe (``references/detection/train.py``): the summed loss,
``torch.optim.SGD(momentum=0.9, weight_decay=1e-4)``, warm-up ``LinearLR`` from
``warmup_factor`` over ``warmup_iters`` chained with ``MultiStepLR``; the reference's
lr 0.02 is for 16 images per batch, scaled here by ``batch_size / 16`` unless you set it.

**Determinism.** Nothing random is carried from one iteration to the next: the batch of
iteration ``t`` is ``DataLoader.batch(t)`` (a pure function of the seed and ``t``) and the
anchors and RoIs sampled at ``t`` come from ``np.random.default_rng([seed, t])``. The state
of a run after ``t`` iterations is therefore the weights, the BatchNorm statistics, the
momentum buffers and the schedule -- exactly what a checkpoint holds -- and resuming from
iteration ``N`` reproduces an uninterrupted run bit for bit.

**Files** in ``out_dir``:

- ``log.jsonl``: one JSON object per iteration ``{"iteration", "lr", "loss", "loss_objectness",
  ..., "seconds"}`` (``iteration`` counts completed iterations, from 1);
- ``checkpoints/iter_000500/``: ``model.safetensors`` (weights and configuration,
  :func:`mrcnn_np.convert.save_model`), ``optimizer.safetensors`` (momentum buffers by
  parameter name) and ``state.json`` (iteration, recipe, optimiser hyper-parameters,
  scheduler state). Written into a temporary folder that is then renamed, so an interrupted
  run never leaves half a checkpoint;
- ``model.safetensors``: the final weights (what ``mrcnn-np predict --weights`` reads).

**Faults.** A folder that holds a run is never trained into again unless you ``resume`` it or
pass ``overwrite=True`` (:class:`RunExistsError`). Resuming checks the checkpoint's model
configuration and recipe against this run's (a different one is refused by name), skips a
damaged checkpoint for the newest intact one (with a :class:`CheckpointWarning`), and drops a
partial last line of ``log.jsonl`` (what a kill mid-write leaves). Ctrl-C raises
:class:`TrainingInterrupted`, and a failed write (a full disk) an ``OSError``, both naming the
last complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backend import check_device, device_of, to_device
from .checks import is_int
from .config import MaskRCNNConfig, config_to_dict
from .convert import CONFIG_KEY, load_safetensors, load_weights, read_metadata, save_model, save_safetensors
from .nn.optim import SGD, WarmupMultiStepLR
from .progress import progress_bar

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")  # Mask R-CNN's;
# a model without the mask branch (Faster R-CNN) has all but loss_mask
CHECKPOINT_FORMAT = 1


@dataclass
class TrainRecipe:
    """Everything that decides a training run besides the model and the data."""

    iterations: int = 1000
    batch_size: int = 4
    lr: float = 0.02 * 4 / 16  # torchvision's 0.02 for 16 images per batch, scaled linearly
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    milestones: tuple = (750, 920)  # iterations at which the lr is multiplied by gamma
    gamma: float = 0.1
    flip_prob: float = 0.5  # horizontal flips (the only augmentation of torchvision's reference)
    seed: int = 0
    checkpoint_every: int = 0  # 0: a checkpoint at the end only

    def __post_init__(self):
        for name in ("iterations", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainRecipe: {name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainRecipe: lr must be a positive number, got {self.lr}")
        if self.warmup_iters < 0 or self.checkpoint_every < 0:
            raise ValueError("TrainRecipe: warmup_iters and checkpoint_every must be >= 0")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"TrainRecipe: flip_prob must lie in [0, 1], got {self.flip_prob}")
        if not is_int(self.seed) or self.seed < 0:
            raise ValueError(f"TrainRecipe: seed must be an integer >= 0, got {self.seed!r}")
        self.milestones = tuple(int(m) for m in self.milestones)


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; raised before the update, so the parameters are the last good
    ones (BatchNorm running statistics have seen the forward pass of the bad batch: resume from the
    last checkpoint rather than going on with the model in memory)."""

    def __init__(self, iteration: int, losses: dict):
        self.iteration, self.losses = iteration, dict(losses)
        bad = [f"{k} = {losses[k]}" for k, v in losses.items() if not math.isfinite(v)]
        listing = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
        super().__init__(
            f"iteration {iteration}: {', '.join(bad)} (losses: {listing}); "
            "training stopped before this update. Try a lower learning rate or a longer warm-up, "
            "and resume from the last checkpoint."
        )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: ``iteration`` (completed iterations) and ``checkpoint`` (the last
    complete one, or None) say where ``resume`` will go on from."""

    def __init__(self, iteration: int, checkpoint):
        self.iteration, self.checkpoint = iteration, checkpoint
        where = f"the last checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
        super().__init__(f"training interrupted after iteration {iteration}; {where}")


class RunExistsError(FileExistsError):
    """``out_dir`` already holds a run and neither ``resume`` nor ``overwrite`` was given."""


class CheckpointMismatchError(ValueError):
    """A checkpoint of another model configuration or recipe than the run resuming it."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped for an older intact one."""


@dataclass
class TrainResult:
    iterations: int  # completed iterations (the recipe's total)
    history: list  # the log records of the iterations run in this call
    seconds: float
    checkpoint: Path | None  # the last checkpoint written
    weights: Path | None  # out_dir/model.safetensors


# --- one step --------------------------------------------------------------------------------
def trainable_parameters(model) -> list[tuple[str, object]]:
    """``(name, parameter)`` of every parameter that requires a gradient, in the model's order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def make_optimizer(model, recipe: TrainRecipe) -> tuple[SGD, WarmupMultiStepLR]:
    """SGD over the trainable parameters and the warm-up + multi-step schedule of ``recipe``."""
    params = [p for _, p in trainable_parameters(model)]
    optimizer = SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    scheduler = WarmupMultiStepLR(optimizer, recipe.milestones, recipe.gamma, recipe.warmup_factor,
                                  recipe.warmup_iters)
    return optimizer, scheduler


def train_step(model, optimizer: SGD, images: list, targets: list, rng=None, sampled=None,
               iteration: int = 0, return_sampled: bool = False):
    """One SGD step on one batch; returns the losses as floats (and ``"loss"``, their sum), or
    ``(losses, sampled)`` with ``return_sampled`` (the anchors and RoIs drawn, as
    :meth:`MaskRCNN.loss` returns them).

    ``rng`` draws the sampled anchors and RoIs (default: the model's own Generator), or
    ``sampled`` replays given ones. Raises :class:`NonFiniteLossError` (naming ``iteration``)
    before touching the weights when a loss is NaN or infinite.
    """
    optimizer.zero_grad()
    losses = model.loss(images, targets, rng=rng, sampled=sampled, return_sampled=return_sampled)
    if return_sampled:
        losses, drawn = losses
    values = {k: float(v.item()) for k, v in losses.items()}
    if not all(math.isfinite(v) for v in values.values()):
        raise NonFiniteLossError(iteration, values)
    first, *rest = losses.values()
    total = sum(rest, first)  # on the losses' device; (a + b) + ... as torch's sum() of a dict's values
    total.backward()
    optimizer.step()
    values = {"loss": float(total.item()), **values}
    return (values, drawn) if return_sampled else values


# --- the loop --------------------------------------------------------------------------------
def train(model, dataset, recipe: TrainRecipe, out_dir=None, *, resume=None, overwrite: bool = False,
          device: str | None = None, progress: bool = True, callback=None) -> TrainResult:
    """Train ``model`` on ``dataset`` (a :class:`mrcnn_np.data.coco.CocoDataset`, or anything
    with ``len`` and ``[i] -> (image, target)``) for ``recipe.iterations`` iterations.

    ``out_dir`` receives the log and checkpoints (nothing is written when it is None).
    ``resume``: a checkpoint folder, or a run's ``out_dir`` (its latest intact checkpoint); the
    model's weights and the optimiser are restored and training goes on from there.
    ``overwrite``: start again in an ``out_dir`` that holds a run (its log, checkpoints and
    weights are deleted first); without it, or ``resume``, such a folder is a :class:`RunExistsError`.
    ``device`` (``"cpu"`` or ``"cuda"``): move the model there first (None: where it is). The
    batches are drawn on the host and move to the model's device in :meth:`MaskRCNN.loss`;
    checkpoints hold host arrays, so a run resumes on either device.
    ``callback(record)`` is called after every iteration with its log record.
    """
    from .data.loader import DataLoader

    if not isinstance(recipe, TrainRecipe):
        raise TypeError(f"train: recipe must be a TrainRecipe, got {type(recipe).__name__}")
    if device is not None:
        model.to(check_device(device, "train"))
    out_dir = prepare_run_folder(out_dir, resume is not None, overwrite)
    loader = DataLoader(dataset, recipe.batch_size, shuffle=True, flip_prob=recipe.flip_prob, seed=recipe.seed)
    metadata = {"classes": json.dumps(list(dataset.categories))} if hasattr(dataset, "categories") else {}
    optimizer, scheduler = make_optimizer(model, recipe)
    start, checkpoint = 0, None
    if resume is not None:
        checkpoint, state = _latest(resume)
        start = _restore(checkpoint, state, model, optimizer, scheduler, recipe)
    log = _open_log(out_dir, start)
    model.train()
    history, smoothed = [], {}
    t_run = time.perf_counter()
    bar = progress_bar(progress, total=recipe.iterations, initial=start, desc="train")
    t = start
    try:
        for t in range(start, recipe.iterations):
            t0 = time.perf_counter()
            images, targets = loader.batch(t)
            lr = optimizer.param_groups[0]["lr"]
            try:
                losses = train_step(model, optimizer, images, targets, rng=np.random.default_rng([recipe.seed, t]),
                                    iteration=t + 1)
            except NonFiniteLossError as e:
                if checkpoint is not None:
                    e.args = (e.args[0] + f" Last checkpoint: {checkpoint}.",)
                raise
            scheduler.step()
            record = {"iteration": t + 1, "lr": lr, **losses, "seconds": time.perf_counter() - t0}
            history.append(record)
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
            for k in ("loss", *(n for n in LOSS_NAMES if n in losses)):  # moving averages for the progress bar
                smoothed[k] = losses[k] if k not in smoothed else 0.9 * smoothed[k] + 0.1 * losses[k]
            bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in smoothed.items()}, refresh=False)
            bar.update()
            if callback is not None:
                callback(record)
            due = recipe.checkpoint_every and (t + 1) % recipe.checkpoint_every == 0
            if out_dir is not None and (due or t + 1 == recipe.iterations):
                checkpoint = _written(checkpoint, save_checkpoint, out_dir, model, optimizer, scheduler, recipe,
                                      t + 1, metadata)
    except KeyboardInterrupt:
        done = history[-1]["iteration"] if history else start
        raise TrainingInterrupted(done, checkpoint) from None
    finally:
        bar.close()
        if log is not None:
            log.close()
    weights = None
    if out_dir is not None:
        weights = out_dir / "model.safetensors"
        _written(checkpoint, save_model, model, weights, {**metadata, "iteration": recipe.iterations})
    model.eval()
    return TrainResult(recipe.iterations, history, time.perf_counter() - t_run, checkpoint, weights)


def _written(checkpoint, write, *args):
    """``write(*args)``; an OSError (a full disk, a removed folder) is re-raised naming the last
    complete checkpoint."""
    try:
        return write(*args)
    except OSError as e:
        where = f"the last complete checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
        raise OSError(e.errno, f"cannot write the run's files ({e.strerror or e}); {where}", e.filename) from e


RUN_FILES = ("log.jsonl", "checkpoints", "model.safetensors")  # what a run leaves in its folder


def prepare_run_folder(out_dir, resuming: bool, overwrite: bool) -> Path | None:
    """``out_dir`` as a Path, created; refuses a file, and a folder holding a run unless resuming or
    overwriting (then the run's files are deleted). Leftovers of an interrupted write are removed."""
    if out_dir is None:
        return None
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} is a file, not a folder for the run")
    held = [name for name in RUN_FILES if (out_dir / name).exists()]
    if held and not resuming:
        if not overwrite:
            raise RunExistsError(f"{out_dir} already holds a run ({', '.join(held)}): resume it (--resume) or "
                                 "start again with --overwrite, or choose another --out")
        for name in held:
            path = out_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    leftovers = [out_dir / "log.jsonl.tmp", out_dir / "model.safetensors.tmp",
                 *(out_dir / "checkpoints").glob(".iter_*")]
    for tmp in (p for p in leftovers if p.exists()):  # what a kill mid-write leaves
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return out_dir


def read_log(path, *, partial_last_line: str = "error") -> list[dict]:
    """The records of a ``log.jsonl`` (a file, or a run folder holding one).

    A last line cut short (no newline, not JSON: what a kill mid-write leaves) is an error,
    or, with ``partial_last_line="drop"``, left out. Any other line that is not a JSON object
    is a ValueError naming the file and line."""
    path = Path(path)
    path = path / "log.jsonl" if path.is_dir() else path
    text = path.read_text()
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and is_int(record.get("iteration")):
            records.append(record)
            continue
        if number == len(lines) and not text.endswith("\n") and partial_last_line == "drop":
            continue  # cut short by a kill: that iteration is run again
        raise ValueError(f"{path}, line {number}: not a log record ({line[:60]!r})")
    return records


def _open_log(out_dir: Path | None, start: int):
    """``out_dir/log.jsonl`` opened for appending, holding only the records of iterations <= ``start``
    (a resumed run drops what the interrupted one logged after its checkpoint, and a line cut short).
    The kept records are written to a new file renamed into place, so a crash here loses nothing."""
    if out_dir is None:
        return None
    path = out_dir / "log.jsonl"
    if start and path.exists():
        kept = [r for r in read_log(path, partial_last_line="drop") if r["iteration"] <= start]
        tmp = path.with_name("log.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)
    else:
        path.write_text("")
    return open(path, "a")  # noqa: SIM115 - closed by train()


# --- checkpoints -----------------------------------------------------------------------------
def save_checkpoint(out_dir, model, optimizer: SGD, scheduler, recipe: TrainRecipe, iteration: int,
                    metadata: dict | None = None) -> Path:
    """Write ``out_dir/checkpoints/iter_NNNNNN/`` atomically; returns its path. ``metadata`` (strings)
    goes into the weights file."""
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{iteration:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        save_model(model, tmp / "model.safetensors", {**(metadata or {}), "iteration": iteration})
        names = {id(p): n for n, p in trainable_parameters(model)}
        buffers = {names[pid]: s["momentum_buffer"] for pid, s in optimizer.state.items() if "momentum_buffer" in s}
        save_safetensors(buffers, tmp / "optimizer.safetensors")
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        state = {"format": CHECKPOINT_FORMAT, "iteration": iteration, "recipe": dataclasses.asdict(recipe),
                 "optimizer": {"param_groups": groups}, "scheduler": scheduler.state_dict()}
        with open(tmp / "state.json", "w") as f:  # written last: a checkpoint with a state.json is complete
            f.write(json.dumps(state, indent=1))
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def latest_checkpoint(path) -> Path:
    """``path`` itself when it is a checkpoint folder, else the newest intact one under
    ``path/checkpoints``; damaged ones (a truncated file, an unreadable ``state.json``) are skipped
    with a :class:`CheckpointWarning` naming them."""
    return _latest(path)[0]


def _latest(path) -> tuple[Path, dict]:
    """:func:`latest_checkpoint` and its checked ``state.json``, read once."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path, _read_state(path)  # a damaged checkpoint asked for by name is an error, not skipped
    found = sorted((path / "checkpoints").glob("iter_*/state.json"), reverse=True)
    if not found:
        raise FileNotFoundError(f"no checkpoint in {path} (looked for {path}/checkpoints/iter_*/state.json)")
    for state in found:
        try:
            return state.parent, _read_state(state.parent)
        except ValueError as e:
            warnings.warn(CheckpointWarning(f"skipping a damaged checkpoint: {e}"), stacklevel=3)
    raise ValueError(f"{path}: every checkpoint is damaged ({', '.join(s.parent.name for s in found)})")


def _read_state(ckpt: Path) -> dict:
    """The ``state.json`` of checkpoint ``ckpt``, after checking that its files are complete; a ValueError
    naming the file otherwise."""
    try:
        state = json.loads((ckpt / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{ckpt / 'state.json'}: unreadable ({e})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else state
        raise ValueError(f"{ckpt / 'state.json'}: unknown checkpoint format {found!r}")
    if not is_int(state.get("iteration")) or not {"recipe", "optimizer", "scheduler"} <= set(state):
        raise ValueError(f"{ckpt / 'state.json'}: incomplete (needs iteration, recipe, optimizer, scheduler)")
    for name in ("model.safetensors", "optimizer.safetensors"):
        try:
            read_metadata(ckpt / name)  # parses the header and checks the file is as long as it says
        except (OSError, ValueError) as e:
            raise ValueError(str(e)) from None
    return state


def load_checkpoint(path, model, optimizer: SGD | None = None, scheduler=None,
                    recipe: TrainRecipe | None = None) -> int:
    """Restore ``model`` (and the optimiser and scheduler, when given) from a checkpoint; returns
    its iteration. A checkpoint of a different model configuration is refused, naming the
    settings that differ; with ``recipe``, so is one made with a different recipe (other than a
    different number of iterations or checkpoint interval)."""
    return _restore(*_latest(path), model, optimizer, scheduler, recipe)


def _restore(ckpt: Path, state: dict, model, optimizer, scheduler, recipe) -> int:
    """:func:`load_checkpoint` of a checkpoint already found and read."""
    saved_config = json.loads(read_metadata(ckpt / "model.safetensors").get(CONFIG_KEY, "null"))
    if saved_config is not None:
        ours = json.loads(json.dumps(config_to_dict(model.config)))
        # a setting added after the checkpoint was written (e.g. the ablation switches) had its default then
        defaults = json.loads(json.dumps(config_to_dict(MaskRCNNConfig())))
        saved_config = {**{k: v for k, v in defaults.items() if k not in saved_config}, **saved_config}
        diff = [f"{k} {saved_config.get(k)!r} (this model: {ours.get(k)!r})"
                for k in sorted(set(ours) | set(saved_config)) if saved_config.get(k) != ours.get(k)]
        if diff:
            raise CheckpointMismatchError(
                f"{ckpt}: the checkpoint is of a different model configuration: {'; '.join(diff)}. "
                "Resume with the same configuration, or train into a new folder")
    if recipe is not None:
        try:
            saved = TrainRecipe(**state["recipe"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{ckpt / 'state.json'}: unusable recipe ({e})") from None
        diff = [f.name for f in dataclasses.fields(recipe) if f.name not in ("iterations", "checkpoint_every")
                and getattr(saved, f.name) != getattr(recipe, f.name)]
        if diff:
            raise CheckpointMismatchError(
                f"{ckpt}: the checkpoint was made with a different recipe ({', '.join(diff)}); "
                "resume with the same settings")
        if state["iteration"] > recipe.iterations:
            raise CheckpointMismatchError(
                f"{ckpt}: the checkpoint is at iteration {state['iteration']}, past the recipe's "
                f"{recipe.iterations}")
    load_weights(model, ckpt / "model.safetensors")
    if optimizer is not None:
        groups = state["optimizer"]["param_groups"]
        if len(groups) != len(optimizer.param_groups):
            raise ValueError(f"{ckpt}: the optimiser has {len(groups)} parameter groups, this one "
                             f"{len(optimizer.param_groups)}")
        for saved, group in zip(groups, optimizer.param_groups, strict=True):
            group.update(saved)
        buffers = load_safetensors(ckpt / "optimizer.safetensors")
        params = dict(trainable_parameters(model))
        unknown = sorted(set(buffers) - set(params))
        if unknown:
            raise ValueError(f"{ckpt}: momentum buffers for parameters this model does not train: {unknown[:5]}")
        optimizer.state = {id(params[n]): {"momentum_buffer": to_device(buf, device_of(params[n].data))
                                           .astype(params[n].dtype, copy=True)}
                           for n, buf in buffers.items()}
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    return int(state["iteration"])
