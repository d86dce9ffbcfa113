"""The training loop: AdamW with a cosine (or one-cycle) learning rate, cross-entropy, the epoch
with the best validation score kept; and the checkpoint it writes.

The checkpoint is ``{"state_dict", "config", "train_config"}`` where ``config`` holds the keyword
arguments of :func:`coffea_lorentz.models.build`, so ``models.pretrained(name, weights=path)``
rebuilds and loads it.
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
from .config import TrainConfig
from .evaluation import evaluate
from .jets import _STREAM_BATCHES, JetSet, _to_tensors, _training_batches

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
