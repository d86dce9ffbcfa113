"""``coffea-lorentz train`` and ``coffea-lorentz evaluate``: fit a tagger on a jet dataset (HDF5, or the
signal and background datasets of a coffea fileset), resumably; score trained weights."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

__all__ = ["register", "print_metrics"]


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..train import TrainConfig

    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train a tagger on a jet dataset (HDF5 from coffea_lorentz.generate, or NanoAOD datasets of a fileset) "
             "and report its test metrics",
        description=(
            "Train TAGGER on the train split of DATA (or of the --signal and --background datasets of --fileset) with "
            "AdamW and a cosine learning rate, keep the epoch with the best validation AUC, and evaluate it on the "
            "test split. Writes OUTPUT/<tagger>.pt (loadable with models.pretrained(name, weights=...)), "
            "OUTPUT/metrics.json (with the training domain: selection, files and UUIDs, jets per class, features) "
            "and ROC / score plots; `coffea-lorentz run --tagger OUTPUT` then scores jets with it. The state after "
            "each epoch is kept in OUTPUT/resume.pt: the same command again continues after the last finished epoch."
        ),
    )
    parser.add_argument("--tagger", required=True, metavar="NAME", help="tagger name (see `coffea-lorentz models`)")
    parser.add_argument("--data", metavar="PATH.h5", help="dataset file with train/val/test splits (or --fileset)")
    parser.add_argument("--signal", nargs="+", metavar="DATASET", help="datasets of --fileset that are signal (label 1)")
    parser.add_argument("--background", nargs="+", metavar="DATASET",
                        help="datasets of --fileset that are background (label 0)")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for checkpoint, metrics and plots")
    parser.add_argument("--size", choices=("compact", "large"), default=defaults.size, help="size preset (default: compact)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help=f"most epochs (default: {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help=f"jets per training batch (default: {defaults.batch_size})")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"peak learning rate (default: {defaults.lr:g})")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                        help=f"AdamW weight decay (default: {defaults.weight_decay:g})")
    parser.add_argument("--schedule", choices=("cosine", "onecycle"), default=defaults.schedule,
                        help="learning-rate schedule (default: cosine with one warm-up epoch)")
    parser.add_argument("--patience", type=int, default=defaults.patience,
                        help=f"stop after this many epochs without a better validation AUC; 0 = never (default: {defaults.patience})")
    parser.add_argument("--max-constituents", type=int, default=defaults.max_constituents,
                        help=f"leading-pT constituents kept per jet (default: {defaults.max_constituents})")
    parser.add_argument("--n-train", type=int, default=None, help="train on this many jets of the train split (default: all)")
    parser.add_argument("--n-val", type=int, default=None, help="validate on this many jets (default: all)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"random seed (default: {defaults.seed})")
    parser.add_argument("--device", default=defaults.device, help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--beam-reference", action="store_true", help="build the tagger with beam reference vectors")
    parser.add_argument("--quiet", action="store_true", help="no line per epoch, no progress bars")
    parser.add_argument("--stop-after-epoch", type=int, metavar="N",
                        help="stop after epoch N, keeping the state in OUTPUT/resume.pt (the same command without "
                             "this option continues)")
    from .fileset_options import add_fileset_arguments

    add_fileset_arguments(parser)
    parser.set_defaults(func=main_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a dataset split with trained weights and print AUC, accuracy and background rejection",
        description=(
            "Load TAGGER with the weights FILE (a checkpoint written by `coffea-lorentz train` or a plain state dict) "
            "and print its metrics on one split of DATA, next to the jet mass used alone."
        ),
    )
    evaluate.add_argument("--tagger", required=True, metavar="NAME", help="tagger name")
    evaluate.add_argument("--weights", required=True, metavar="FILE", help="checkpoint or state-dict file")
    evaluate.add_argument("--data", required=True, metavar="PATH.h5", help="dataset file")
    evaluate.add_argument("--split", choices=("train", "val", "test"), default="test", help="split to score (default: test)")
    evaluate.add_argument("--max-constituents", type=int, default=None,
                          help="leading-pT constituents kept per jet (default: the checkpoint's training value, else 128)")
    evaluate.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    evaluate.set_defaults(func=main_evaluate)


def _format(value: Any, digits: int = 4) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def print_metrics(title: str, rows: list[tuple[str, dict[str, Any]]], extra: list[tuple[str, str]] = ()) -> None:
    """A table with one row per (name, metrics) pair: AUC, accuracy, 1/ε_B at ε_S = 0.3 and 0.5."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("discriminant", "AUC", "accuracy", "1/ε_B @ ε_S=0.3", "1/ε_B @ ε_S=0.5"):
        table.add_column(column, justify="left" if column == "discriminant" else "right")
    for name, values in rows:
        table.add_row(
            name,
            _format(values["auc"]),
            _format(values["accuracy"]) if "accuracy" in values else "—",
            _format(values["rejection_at_0.3"], 1),
            _format(values["rejection_at_0.5"], 1),
        )
    console = Console()
    console.print(table)
    for key, value in extra:
        console.print(f"{key}: {value}")


def _fileset_jets(args: argparse.Namespace, max_constituents: int):
    """The splits and record of ``--fileset --signal --background``."""
    from ..train.filesets import fileset_splits
    from .fileset_options import fileset_of, fractions_of, selection_of

    if not args.signal or not args.background:
        raise InvalidInputError("--fileset: name the classes with --signal DATASET... and --background DATASET...")
    return fileset_splits(fileset_of(args), signal=args.signal, background=args.background,
                          max_constituents=max_constituents, collection=args.collection, selection=selection_of(args),
                          fractions=fractions_of(args), max_jets=args.max_jets, progress=not args.quiet)


def main_train(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train, train_on_jets

    config = TrainConfig(
        tagger=args.tagger,
        size=args.size,
        beam_reference=args.beam_reference,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        patience=args.patience,
        max_constituents=args.max_constituents,
        n_train=args.n_train,
        n_val=args.n_val,
        seed=args.seed,
        device=args.device,
        n_threads=args.threads,
    )
    if (args.data is None) == (args.fileset is None):
        raise InvalidInputError("train: give either --data PATH.h5 or --fileset FILESET.json --signal ... --background ...")
    log = None if args.quiet else print
    run = dict(log=log, stop_after_epoch=args.stop_after_epoch, progress=not args.quiet)
    if args.data is not None:
        source = args.data
        result = train(config, args.data, args.output, **run)
    else:
        splits, record = _fileset_jets(args, config.max_constituents)
        source = " ".join(args.fileset)
        record["train_command"] = shlex.join(["coffea-lorentz", *getattr(args, "argv", [])])
        result = train_on_jets(config, splits, args.output, source=source, record=record, **run)
    if "stopped_after" in result:
        print(f"stopped after epoch {result['stopped_after']}; the same command without --stop-after-epoch continues "
              f"from {Path(args.output) / 'resume.pt'}")
        return 0
    rows = [(args.tagger, result["test"])] + [(f"jet {name} alone", m) for name, m in result["baselines"].items()]
    print_metrics(
        f"test split of {source} ({result['n_test']} jets)",
        rows,
        [
            ("parameters", f"{result['n_parameters']:,}"),
            ("training jets", f"{result['n_train']:,}"),
            ("epochs run", f"{result['epochs_run']} (best {result['best_epoch']})"),
            ("training time", f"{result['train_time_s']:.1f} s"),
            ("checkpoint", result["checkpoint"]),
            ("metrics", str(Path(args.output) / "metrics.json")),
        ],
    )
    return 0


def main_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .. import models
    from ..train import evaluate, load_split, observable_baselines

    weights = Path(args.weights)
    if not weights.is_file():
        raise InvalidInputError(f"--weights: no such file {weights}")
    max_constituents = args.max_constituents
    if max_constituents is None:
        saved = torch.load(weights, map_location="cpu", weights_only=True)
        train_config = saved.get("train_config", {}) if isinstance(saved, dict) else {}
        max_constituents = int(train_config.get("max_constituents", 128))
    model = models.pretrained(args.tagger, weights=weights).to(args.device)
    jets = load_split(args.data, args.split, max_constituents=max_constituents)
    result, _ = evaluate(model, jets, device=args.device)
    baselines = observable_baselines(jets)
    if args.json:
        print(json.dumps({"tagger": args.tagger, args.split: result, "baselines": baselines}, indent=2, default=str))
        return 0
    rows = [(args.tagger, result)] + [(f"jet {name} alone", m) for name, m in baselines.items()]
    print_metrics(
        f"{args.split} split of {args.data} ({len(jets)} jets, ≤ {max_constituents} constituents)",
        rows,
        [("loss", f"{result['loss']:.4f}"), ("weights", str(weights))],
    )
    return 0
