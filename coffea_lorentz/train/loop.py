"""The training loop: AdamW with a cosine (or one-cycle) learning rate, cross-entropy, the epoch
with the best validation score kept; and the checkpoint it writes.

The checkpoint is ``{"state_dict", "config", "train_config"}`` where ``config`` holds the keyword
arguments of :func:`coffea_lorentz.models.build`, so ``models.pretrained(name, weights=path)``
rebuilds and loads it. With ``resume``, :func:`fit` also saves its whole state after every epoch
(``resume.pt`` in a training folder) and continues from it when run again with the same options.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import models
from ..errors import InvalidInputError
from ..progress import progress_bar
from .config import TrainConfig
from .evaluation import evaluate
from .jets import _STREAM_BATCHES, _STREAM_TORCH, JetSet, _to_tensors, _training_batches

__all__ = ["fit", "build_model", "n_parameters", "save_checkpoint"]


def _resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"device {name!r} requested but torch sees no CUDA device")
    return torch.device(name)


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


def _train_epoch(
    model: nn.Module,
    jets: JetSet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
    advance=lambda n=1: None,
) -> float:
    """One pass over ``jets``; returns the mean training loss. ``advance(1)`` after each batch."""
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
        advance(1)
    return total_loss / len(jets)


#: The options a resumed run must share with the run that wrote the checkpoint (device and threads may change).
_FREE_OPTIONS = ("device", "n_threads")


def _run_options(config: TrainConfig, train_jets: JetSet, val_jets: JetSet) -> dict[str, Any]:
    """What decides the epochs of a run: the config (less device and threads) and the jets' fingerprint."""
    options = {k: v for k, v in config.to_dict().items() if k not in _FREE_OPTIONS}
    options["model_options"] = sorted((str(k), repr(v)) for k, v in options["model_options"].items())
    for name, jets in (("train", train_jets), ("val", val_jets)):
        options[f"{name}_jets"] = [len(jets), int(jets.label.sum()), int(jets.lengths.sum()),
                                   float(np.asarray(jets.p4, dtype=np.float64).sum())]
    return options


def _load_resume(path: Path, options: dict[str, Any]) -> dict[str, Any] | None:
    """The state saved at ``path`` after an epoch, or None when there is none; refuses other options."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch raises several types for a torn file
        raise InvalidInputError(f"{path}: cannot read the epoch checkpoint ({str(err)[:120]}); delete it to start "
                                "again") from None
    saved = state.get("options", {})
    if saved != options:
        differ = sorted(k for k in set(saved) | set(options) if saved.get(k) != options.get(k))
        raise InvalidInputError(f"{path}: the run it continues had other options or jets ({', '.join(differ)}); "
                                "rerun with the same options, or choose another --output (or delete the file)")
    return state


def _save_resume(path: Path, state: dict[str, Any]) -> None:
    """Write the epoch checkpoint beside and rename it into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def fit(
    config: TrainConfig, train_jets: JetSet, val_jets: JetSet, *, log: Any = None,
    resume: str | Path | None = None, stop_after_epoch: int | None = None, progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a fresh tagger of ``config`` on ``train_jets``; returns the model of the best validation
    epoch (highest AUC or lowest loss, ``config.select_on``) and the history.

    ``log(str)`` (optional) receives one line per epoch. With ``resume`` (a file), the state after
    each epoch — model, optimizer, schedule, random streams, epoch, the best epoch so far, history —
    is saved there, and a run finding that file continues after its last finished epoch (the same
    numbers as one uninterrupted run); a file written with other options or jets is refused.
    ``stop_after_epoch`` returns after that epoch (the run can be continued). ``progress`` draws
    a bar per epoch on stderr.
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
    history: list[dict[str, Any]] = []
    first_epoch, stopped = 1, False
    resume_path = Path(resume) if resume is not None else None
    options = _run_options(config, train_jets, val_jets) if resume_path is not None else {}
    saved = _load_resume(resume_path, options) if resume_path is not None else None
    torch_rng = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        rng.bit_generator.state = saved["numpy_rng"]
        torch_rng = saved["torch_rng"]
        best_state, best_epoch = saved["best_state"], saved["best_epoch"]
        best_score, best_auc = saved["best_score"], saved["best_auc"]
        history, stopped = list(saved["history"]), bool(saved["stopped"])
        first_epoch = int(saved["epoch"]) + 1
        if log is not None:
            log(f"{config.tagger}: continuing after epoch {saved['epoch']} from {resume_path}")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        if torch_rng is None:  # a fresh run: the torch stream of the seed (the global one is left untouched)
            torch.manual_seed(int(np.random.SeedSequence(config.seed, spawn_key=(_STREAM_TORCH,)).generate_state(1)[0]))
        else:
            torch.set_rng_state(torch_rng)
        for epoch in range(first_epoch, config.epochs + 1):
            if stopped or (stop_after_epoch is not None and epoch > stop_after_epoch):
                break
            epoch_start = time.perf_counter()
            with progress_bar(steps_per_epoch, f"{config.tagger} epoch {epoch}/{config.epochs}", unit="batches",
                              enabled=progress) as advance:
                train_loss = _train_epoch(model, train_jets, optimizer, scheduler, config, rng, device, advance)
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
                stopped = True
            if resume_path is not None:
                _save_resume(resume_path, {
                    "options": options, "epoch": epoch, "stopped": stopped,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "best_state": best_state, "best_epoch": best_epoch, "best_score": best_score,
                    "best_auc": best_auc, "history": history,
                })
    train_time_s = time.perf_counter() - start
    model.load_state_dict(best_state)
    return model, {
        "history": history,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_time_s": train_time_s,
        "best_val_auc": best_auc,
        "complete": stopped or len(history) >= config.epochs,
    }


def save_checkpoint(model: nn.Module, config: TrainConfig, path: str | Path) -> Path:
    """Write ``{"state_dict", "config", "train_config"}`` (CPU tensors) to ``path``; loadable by ``models.pretrained``."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "config": config.build_kwargs(), "train_config": config.to_dict()}, path)
    return path
