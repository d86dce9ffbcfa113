"""Train and evaluate taggers on top-tagging datasets (:mod:`coffea_lorentz.generate.dataset` HDF5 files).

- :class:`TrainConfig` — everything that decides a training run (tagger, size, budget, seed).
- :func:`train` — AdamW + cosine (or one-cycle) learning rate, cross-entropy, early stopping on the
  validation AUC; writes ``<tagger>.pt`` (best validation AUC), ``metrics.json`` and plots.
- :func:`evaluate` / :func:`predict` — scores and metrics of any tagger on a split; run twice on the
  same jets they give the same numbers (fixed batching, no randomness).

Jets are cut to their ``max_constituents`` leading-pT constituents. Batches hold jets of similar
length and are padded to their own longest jet only: the training set is shuffled each epoch, cut
into pools of ``POOL_BATCHES`` batches, each pool sorted by length and cut into batches, and the
batch order shuffled again.

The checkpoint is ``{"state_dict", "config", "train_config"}`` where ``config`` holds the keyword
arguments of :func:`coffea_lorentz.models.build`, so ``models.pretrained(name, weights=path)``
rebuilds and loads it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import metrics, models
from .errors import InvalidInputError
from .threads import thread_count

__all__ = [
    "TrainConfig",
    "JetSet",
    "load_split",
    "truncate",
    "predict",
    "evaluate",
    "observable_baselines",
    "train",
    "write_plots",
    "thread_count",
    "POOL_BATCHES",
]

#: Training batches whose jets are sorted by length together (larger: less padding, less mixing).
POOL_BATCHES = 16

#: The splits of a dataset file, in the order they are read.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Jets per batch when scoring (no gradients, so larger than training batches).
EVAL_BATCH_SIZE = 256

#: Observables evaluated as one-variable discriminants next to the taggers (larger = more top-like).
BASELINE_OBSERVABLES: tuple[str, ...] = ("mass", "msoftdrop")

_SCHEDULES = ("cosine", "onecycle")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run.

    Attributes:
        tagger: registry name (:func:`coffea_lorentz.models.available`).
        size: the tagger's size preset, ``"compact"`` or ``"large"``.
        beam_reference: build the tagger with the beam/time reference vectors.
        model_options: further keyword options of the tagger, as (name, value) pairs.
        epochs: most passes over the training set.
        batch_size: jets per training batch.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay.
        schedule: ``"cosine"`` (linear warm-up over the first epoch, then cosine to 0 at ``epochs``)
            or ``"onecycle"`` (PyTorch ``OneCycleLR``).
        grad_clip_norm: clip the global gradient norm to this (None: no clipping).
        patience: stop after this many epochs without a better validation score (0: never stop early).
        select_on: the validation score that picks the kept epoch: ``"auc"`` (ranking, for taggers)
            or ``"loss"`` (cross-entropy, a proper scoring rule: for classifiers whose
            probabilities are used, as in reweighting).
        max_constituents: leading-pT constituents kept per jet.
        n_train: train on this many jets drawn (seeded) from the training split; None = all.
        n_val: validate on this many jets of the validation split; None = all.
        seed: seeds the model initialisation, the subsampling and the batch order.
        device: ``"cpu"`` or ``"cuda"`` (must be available).
        n_threads: torch CPU threads during the run (None: leave as is).
    """

    tagger: str = "lorentznet"
    size: str = "compact"
    beam_reference: bool = False
    model_options: tuple[tuple[str, Any], ...] = ()
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    schedule: str = "cosine"
    grad_clip_norm: float | None = 5.0
    patience: int = 5
    select_on: str = "auc"
    max_constituents: int = 128
    n_train: int | None = None
    n_val: int | None = None
    seed: int = 0
    device: str = "cpu"
    n_threads: int | None = None

    def __post_init__(self) -> None:
        if self.tagger not in models.available():
            raise InvalidInputError(
                f"TrainConfig.tagger: expected one of {', '.join(models.available())}, got {self.tagger!r}"
            )
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "max_constituents": self.max_constituents}
        for name, value in positive.items():
            if value < 1:
                raise InvalidInputError(f"TrainConfig.{name}: expected >= 1, got {value}")
        for name in ("n_train", "n_val", "n_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidInputError(f"TrainConfig.{name}: expected >= 1 or None, got {value}")
        if not self.lr > 0:
            raise InvalidInputError(f"TrainConfig.lr: expected > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise InvalidInputError(f"TrainConfig.weight_decay: expected >= 0, got {self.weight_decay}")
        if self.patience < 0:
            raise InvalidInputError(f"TrainConfig.patience: expected >= 0, got {self.patience}")
        if self.select_on not in ("auc", "loss"):
            raise InvalidInputError(f"TrainConfig.select_on: expected 'auc' or 'loss', got {self.select_on!r}")
        if self.schedule not in _SCHEDULES:
            raise InvalidInputError(f"TrainConfig.schedule: expected one of {_SCHEDULES}, got {self.schedule!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InvalidInputError(f"TrainConfig.device: expected 'cpu' or 'cuda', got {self.device!r}")
        object.__setattr__(self, "model_options", tuple((str(k), v) for k, v in dict(self.model_options).items()))

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`coffea_lorentz.models.build` for this run's tagger."""
        return {"size": self.size, "beam_reference": self.beam_reference, **dict(self.model_options)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``model_options`` as a dict)."""
        out = dataclasses.asdict(self)
        out["model_options"] = dict(self.model_options)
        return out


@dataclass(frozen=True)
class JetSet:
    """Jets of one split, truncated.

    Attributes:
        p4: float32 [n_jets, n_max, 4] as (E, px, py, pz) in GeV, leading-pT first, zero-padded.
        mask: bool [n_jets, n_max], True = real constituent.
        label: int64 [n_jets], 1 = top, 0 = QCD.
        observables: name → [n_jets] per-jet observables (mass etc., GeV for masses).
    """

    p4: np.ndarray
    mask: np.ndarray
    label: np.ndarray
    observables: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    def take(self, index: np.ndarray) -> JetSet:
        """The jets at ``index`` (int array), in that order."""
        return JetSet(
            p4=self.p4[index],
            mask=self.mask[index],
            label=self.label[index],
            observables={k: v[index] for k, v in self.observables.items()},
        )

    @property
    def lengths(self) -> np.ndarray:
        """int64 [n_jets] real constituents per jet."""
        return self.mask.sum(axis=1).astype(np.int64)


def truncate(p4: np.ndarray, mask: np.ndarray, max_constituents: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``max_constituents`` leading-pT real constituents of each jet.

    ``p4`` float [n_jets, N, 4] (E, px, py, pz) GeV and ``mask`` bool [n_jets, N] →
    p4 float32 [n_jets, min(N, max_constituents), 4] pT-descending with zeros after the real ones, and its mask.
    """
    if p4.ndim != 3 or p4.shape[-1] != 4 or mask.shape != p4.shape[:2]:
        raise InvalidInputError(f"truncate: expected p4 [n, N, 4] and mask [n, N], got {p4.shape} and {mask.shape}")
    pt = np.hypot(p4[..., 1], p4[..., 2])
    order = np.argsort(-np.where(mask, pt, -1.0), axis=1, kind="stable")[:, :max_constituents]
    p4_out = np.take_along_axis(p4, order[..., np.newaxis], axis=1).astype(np.float32)
    mask_out = np.take_along_axis(mask, order, axis=1)
    p4_out[~mask_out] = 0.0
    return p4_out, mask_out


def load_split(path: str | Path, split: str, *, max_constituents: int) -> JetSet:
    """One split of a dataset file, truncated to ``max_constituents`` (see :func:`truncate`)."""
    from .generate.dataset import load_dataset

    p4, mask, label, observables = load_dataset(path, split)
    if len(label) == 0:
        raise InvalidInputError(f"{path}: split {split!r} holds no jets")
    p4, mask = truncate(p4, mask, max_constituents)
    return JetSet(p4=p4, mask=mask, label=np.asarray(label, dtype=np.int64), observables=observables)


def _length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices [n] cut into batches of similar length, in a fixed order (shortest first)."""
    order = np.argsort(lengths, kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _training_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of shuffled, length-pooled batches (see the module docstring)."""
    permutation = rng.permutation(len(lengths))
    pool_size = batch_size * POOL_BATCHES
    batches = []
    for start in range(0, len(permutation), pool_size):
        pool = permutation[start : start + pool_size]
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        batches.extend(pool[k : k + batch_size] for k in range(0, len(pool), batch_size))
    return [batches[k] for k in rng.permutation(len(batches))]


def _to_tensors(jets: JetSet, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """p4 [b, n, 4] and mask [b, n] of the jets at ``index``, padded to their longest jet (n ≥ 1)."""
    n_max = max(int(jets.mask[index].sum(axis=1).max()), 1)
    p4 = torch.from_numpy(np.ascontiguousarray(jets.p4[index, :n_max])).to(device)
    mask = torch.from_numpy(np.ascontiguousarray(jets.mask[index, :n_max])).to(device)
    return p4, mask


def _resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"device {name!r} requested but torch sees no CUDA device")
    return torch.device(name)


@torch.no_grad()
def predict(
    model: nn.Module, jets: JetSet, *, batch_size: int = EVAL_BATCH_SIZE, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Logits float32 [n_jets, n_classes] and signal probability float64 [n_jets] (softmax of class 1).

    Batches are fixed by length order, so the numbers do not depend on anything but the jets.
    """
    if len(jets) == 0:
        raise InvalidInputError("predict: expected at least one jet, got none")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    logits_out = np.empty((0, 0), dtype=np.float32)
    try:
        for index in _length_sorted_batches(jets.lengths, batch_size):
            p4, mask = _to_tensors(jets, index, device)
            logits = model(p4, mask).float().cpu().numpy()
            if logits_out.size == 0:
                logits_out = np.empty((len(jets), logits.shape[1]), dtype=np.float32)
            logits_out[index] = logits
    finally:
        model.train(was_training)
    probability = torch.softmax(torch.from_numpy(logits_out).double(), dim=1)[:, 1].numpy()
    return logits_out, probability


def _cross_entropy(logits: np.ndarray, label: np.ndarray) -> float:
    return float(nn.functional.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(label)).item())


def evaluate(
    model: nn.Module, jets: JetSet, *, batch_size: int = EVAL_BATCH_SIZE, device: str | torch.device = "cpu"
) -> tuple[dict[str, float | int], np.ndarray]:
    """Metrics of ``model`` on ``jets`` (:func:`coffea_lorentz.metrics.summary` plus ``loss``) and the scores [n_jets]."""
    logits, score = predict(model, jets, batch_size=batch_size, device=device)
    result = metrics.summary(jets.label, score)
    result["loss"] = _cross_entropy(logits, jets.label)
    return result, score


def observable_baselines(jets: JetSet) -> dict[str, dict[str, float | int]]:
    """AUC and background rejection of each :data:`BASELINE_OBSERVABLES` the jets carry, used as the score."""
    return {
        name: metrics.summary(jets.label, np.asarray(jets.observables[name], dtype=np.float64), threshold=None)
        for name in BASELINE_OBSERVABLES
        if name in jets.observables
    }


def _learning_rate_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    warmup = min(steps_per_epoch, max(total - 1, 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_model(config: TrainConfig) -> nn.Module:
    """The untrained tagger of ``config``, initialised from ``config.seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return models.build(config.tagger, **config.build_kwargs())


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


#: Independent random streams drawn from one seed (SeedSequence spawn keys).
_STREAM_N_TRAIN, _STREAM_N_VAL, _STREAM_BATCHES = 1, 2, 3


def _subsample(jets: JetSet, n: int | None, seed: int, stream: int, what: str) -> JetSet:
    """``n`` jets drawn without replacement (kept in file order), or all of them when ``n`` is None."""
    if n is None or n == len(jets):
        return jets
    if n > len(jets):
        raise InvalidInputError(f"{what}: asked for {n} jets but the split holds {len(jets)}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))
    return jets.take(np.sort(rng.permutation(len(jets))[:n]))


def _train_epoch(
    model: nn.Module,
    jets: JetSet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
) -> float:
    """One pass over ``jets``; returns the mean training loss."""
    model.train()
    total_loss = 0.0
    for index in _training_batches(jets.lengths, config.batch_size, rng):
        p4, mask = _to_tensors(jets, index, device)
        label = torch.from_numpy(jets.label[index]).to(device)
        loss = nn.functional.cross_entropy(model(p4, mask), label)
        if not torch.isfinite(loss):
            raise InvalidInputError(f"{config.tagger}: training loss became {loss.item()} (lower lr or clip gradients)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        total_loss += float(loss.item()) * len(index)
    return total_loss / len(jets)


def fit(
    config: TrainConfig, train_jets: JetSet, val_jets: JetSet, *, log: Any = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a fresh tagger of ``config`` on ``train_jets``; returns the model of the best validation
    epoch (highest AUC or lowest loss, ``config.select_on``) and the history.

    ``log(str)`` (optional) receives one line per epoch.
    """
    device = _resolve_device(config.device)
    model = build_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_jets) // config.batch_size)
    scheduler = _learning_rate_schedule(optimizer, config, steps_per_epoch)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_STREAM_BATCHES,)))
    best_auc = best_score = -math.inf
    best_state: dict[str, torch.Tensor] = {}
    best_epoch = 0
    history = []
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        train_loss = _train_epoch(model, train_jets, optimizer, scheduler, config, rng, device)
        val_metrics, _ = evaluate(model, val_jets, device=device)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_metrics["loss"],
            "val_auc": val_metrics["auc"],
            "val_accuracy": val_metrics["accuracy"],
            "lr_end": optimizer.param_groups[0]["lr"],
            "epoch_s": time.perf_counter() - epoch_start,
        }
        history.append(row)
        if log is not None:
            log(
                f"{config.tagger} epoch {epoch:3d}: train loss {train_loss:.4f}  val loss {row['val_loss']:.4f}  "
                f"val AUC {row['val_auc']:.4f}  ({row['epoch_s']:.1f} s)"
            )
        score = val_metrics["auc"] if config.select_on == "auc" else -val_metrics["loss"]
        # the first epoch is always kept: a one-class validation split has a NaN AUC, never "better"
        if best_epoch == 0 or score > best_score:
            best_score, best_auc = score, val_metrics["auc"]
            best_epoch = epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elif config.patience and epoch - best_epoch >= config.patience:
            break
    train_time_s = time.perf_counter() - start
    model.load_state_dict(best_state)
    return model, {
        "history": history,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_time_s": train_time_s,
        "best_val_auc": best_auc,
    }


def save_checkpoint(model: nn.Module, config: TrainConfig, path: str | Path) -> Path:
    """Write ``{"state_dict", "config", "train_config"}`` (CPU tensors) to ``path``; loadable by ``models.pretrained``."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "config": config.build_kwargs(), "train_config": config.to_dict()}, path)
    return path


def write_plots(
    output_dir: str | Path,
    tagger: str,
    label: np.ndarray,
    score: np.ndarray,
    baselines: dict[str, np.ndarray] | None = None,
) -> list[Path]:
    """ROC curve (1/ε_B against ε_S, log y) and per-class score histograms as PNG files in ``output_dir``.

    ``label`` int [n_jets], ``score`` float [n_jets] in [0, 1]; ``baselines`` maps a name to another
    score [n_jets] drawn on the ROC plot for comparison.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep

    output_dir = Path(output_dir)
    paths = []
    with plt.style.context(mplhep.style.CMS):
        figure, axis = plt.subplots(figsize=(8, 7))
        curves = {tagger: score, **(baselines or {})}
        for name, values in curves.items():
            eps_s, eps_b, _ = metrics.roc_curve(label, values)
            keep = eps_b > 0
            axis.plot(
                eps_s[keep], 1.0 / eps_b[keep], label=f"{name} (AUC {metrics.auc(label, values):.3f})"
            )
        axis.set_yscale("log")
        axis.set_xlim(0, 1)
        axis.set_xlabel(r"Signal efficiency $\varepsilon_S$")
        axis.set_ylabel(r"Background rejection $1/\varepsilon_B$")
        axis.legend(fontsize="small")
        axis.grid(True, which="both", alpha=0.3)
        paths.append(output_dir / f"{tagger}_roc.png")
        figure.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(figure)

        figure, axis = plt.subplots(figsize=(8, 7))
        bins = np.linspace(0, 1, 41)
        for value, name in ((1, "top (signal)"), (0, "QCD (background)")):
            axis.hist(score[label == value], bins=bins, histtype="step", density=True, linewidth=2, label=name)
        axis.set_xlabel(f"{tagger} score")
        axis.set_ylabel("Jets (normalised)")
        axis.set_yscale("log")
        axis.legend(fontsize="small")
        paths.append(output_dir / f"{tagger}_scores.png")
        figure.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(figure)
    return paths


def _json_ready(value: Any) -> Any:
    """inf/NaN → strings JSON can hold; numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def train(config: TrainConfig, dataset_path: str | Path, output_dir: str | Path, *, log: Any = None) -> dict[str, Any]:
    """Train ``config.tagger`` on ``dataset_path``; write the checkpoint, ``metrics.json`` and plots to ``output_dir``.

    The model of the epoch with the best validation AUC is kept and evaluated on the test split.
    Returns the metrics dict written to ``metrics.json`` (``test``: AUC, accuracy, 1/ε_B at ε_S =
    0.3 and 0.5, loss; ``baselines``: the same for the jet mass alone; parameter count, training
    time in seconds, jets used, epochs run, the history per epoch and the paths written).
    ``log(str)`` (optional) receives progress lines.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with thread_count(config.n_threads):
        splits = {name: load_split(dataset_path, name, max_constituents=config.max_constituents) for name in SPLITS}
        train_jets = _subsample(splits["train"], config.n_train, config.seed, _STREAM_N_TRAIN, "n_train")
        val_jets = _subsample(splits["val"], config.n_val, config.seed, _STREAM_N_VAL, "n_val")
        test_jets = splits["test"]
        model, fit_summary = fit(config, train_jets, val_jets, log=log)
        checkpoint = save_checkpoint(model, config, output_dir / f"{config.tagger}.pt")
        model = model.cpu()
        test_metrics, test_score = evaluate(model, test_jets)
    plots = write_plots(
        output_dir,
        config.tagger,
        test_jets.label,
        test_score,
        {f"jet {name}": test_jets.observables[name] for name in BASELINE_OBSERVABLES[:1] if name in test_jets.observables},
    )
    result = {
        "tagger": config.tagger,
        "size": config.size,
        "dataset": str(dataset_path),
        "n_parameters": n_parameters(model),
        "n_train": len(train_jets),
        "n_val": len(val_jets),
        "n_test": len(test_jets),
        "epochs_run": fit_summary["epochs_run"],
        "best_epoch": fit_summary["best_epoch"],
        "train_time_s": fit_summary["train_time_s"],
        "best_val_auc": fit_summary["best_val_auc"],
        "test": test_metrics,
        "baselines": observable_baselines(test_jets),
        "history": fit_summary["history"],
        "train_config": config.to_dict(),
        "checkpoint": str(checkpoint),
        "plots": [str(p) for p in plots],
        "torch_version": torch.__version__,
    }
    result = _json_ready(result)
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
