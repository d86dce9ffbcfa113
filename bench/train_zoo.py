"""Train every registered tagger on one dataset with one budget; then a data-efficiency study.

Usage (what produced build/results/zoo.md is recorded in its header)::

    python bench/train_zoo.py --data build/train/jets.h5 --output build/results \
        --n-train 4000 --n-val 1000 --epochs 6 --max-constituents 32 \
        --efficiency-sizes 1000 6058 --efficiency-taggers lorentznet baseline --efficiency-epochs both

Each run lands in ``OUTPUT/runs/<tagger>_n<n_train>/`` (checkpoint, metrics.json, plots). A run
whose metrics.json already holds the same training configuration is not repeated, so several
invocations with disjoint ``--taggers`` can run side by side and a last one writes the tables
``OUTPUT/zoo.md`` and ``OUTPUT/zoo.json``. Training times are wall-clock seconds on a shared
machine: compare them as ratios within one table only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from coffea_lorentz import models
from coffea_lorentz.train import TrainConfig, train

#: Taggers that are not trainable networks.
SKIP = ("identity",)

#: Taggers compared in the data-efficiency study by default: equivariant vs. the non-equivariant baseline.
EFFICIENCY_TAGGERS = ("lorentznet", "baseline")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset HDF5 file (train/val/test)")
    parser.add_argument("--output", default="build/results", help="results folder (default: build/results)")
    parser.add_argument("--taggers", nargs="*", default=None, help="taggers to train (default: all registered but identity)")
    parser.add_argument("--size", default="compact", choices=("compact", "large"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=0)
    parser.add_argument("--max-constituents", type=int, default=32)
    parser.add_argument("--n-train", type=int, default=None, help="training jets of the zoo runs (default: all)")
    parser.add_argument("--n-val", type=int, default=None, help="validation jets (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--efficiency-sizes", type=int, nargs="*", default=(), help="extra n_train values to study")
    parser.add_argument("--efficiency-taggers", nargs="*", default=EFFICIENCY_TAGGERS)
    parser.add_argument(
        "--efficiency-epochs",
        choices=("fixed", "equal-steps", "both"),
        default="fixed",
        help="fixed: every size trains --epochs epochs; equal-steps: sizes below --n-train train more epochs so "
        "they take as many optimizer steps as the zoo runs; both: run and tabulate both (default: fixed)",
    )
    parser.add_argument("--table-only", action="store_true", help="only collect finished runs into the tables")
    return parser.parse_args(argv)


def run_config(args: argparse.Namespace, tagger: str, n_train: int | None, *, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(
        tagger=tagger,
        size=args.size,
        epochs=epochs or args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        max_constituents=args.max_constituents,
        n_train=n_train,
        n_val=args.n_val,
        seed=args.seed,
        n_threads=args.threads,
    )


def run_dir(output: Path, config: TrainConfig, default_epochs: int) -> Path:
    suffix = f"_e{config.epochs}" if config.epochs != default_epochs else ""
    return output / "runs" / f"{config.tagger}_n{config.n_train or 'all'}{suffix}"


def equal_step_epochs(args: argparse.Namespace, n_train: int) -> int:
    """Epochs that give ``n_train`` jets as many optimizer steps as the zoo runs (never fewer than --epochs)."""
    if args.n_train is None or n_train >= args.n_train:
        return args.epochs
    steps_per_epoch = -(-args.n_train // args.batch_size)
    return max(args.epochs, round(args.epochs * steps_per_epoch / -(-n_train // args.batch_size)))


def run_or_reuse(config: TrainConfig, data: str, output: Path, *, default_epochs: int, table_only: bool) -> dict | None:
    """The metrics of ``config`` on ``data``: read back when already done, else trained now (unless ``table_only``)."""
    folder = run_dir(output, config, default_epochs)
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        recorded = json.loads(metrics_path.read_text())
        # options added since a run was recorded count as their defaults
        wanted = config.to_dict()
        if {**wanted, **recorded.get("train_config", {})} == wanted and recorded.get("dataset") == data:
            return recorded
    if table_only:
        return None
    print(f"--- training {config.tagger} on {config.n_train or 'all'} jets → {folder}", flush=True)
    return train(config, data, folder, log=lambda line: print(line, flush=True))


def _number(value, digits: int = 1) -> str:
    return value if isinstance(value, str) else f"{value:.{digits}f}"


def zoo_table(results: list[dict]) -> list[str]:
    baseline_time = next((r["train_time_s"] for r in results if r["tagger"] == "baseline"), None)
    lines = [
        "| tagger | invariance | parameters | n_train | epochs (best) | train time [s] | time / baseline "
        "| test AUC | accuracy | 1/ε_B @ ε_S=0.3 | 1/ε_B @ ε_S=0.5 |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        invariance = getattr(models.build(r["tagger"], size=r["size"]), "invariance", "?")
        ratio = f"{r['train_time_s'] / baseline_time:.2f}" if baseline_time else "—"
        t = r["test"]
        lines.append(
            f"| {r['tagger']} | {invariance} | {r['n_parameters']:,} | {r['n_train']:,} | {r['epochs_run']} ({r['best_epoch']}) "
            f"| {r['train_time_s']:.0f} | {ratio} | {t['auc']:.4f} | {t['accuracy']:.4f} "
            f"| {_number(t['rejection_at_0.3'])} | {_number(t['rejection_at_0.5'])} |"
        )
    if results:
        for name, m in results[0]["baselines"].items():
            lines.append(
                f"| jet {name} alone | — | 0 | — | — | — | — | {m['auc']:.4f} | — "
                f"| {_number(m['rejection_at_0.3'])} | {_number(m['rejection_at_0.5'])} |"
            )
    return lines


def efficiency_table(results: list[tuple[str, dict]]) -> list[str]:
    """Rows: (tagger, epoch policy); columns: n_train; cells: test AUC, 1/ε_B at ε_S = 0.3, epochs."""
    sizes = sorted({r["n_train"] for _, r in results})
    rows = list(dict.fromkeys(f"{r['tagger']} ({policy})" for policy, r in results))
    by_key = {(f"{r['tagger']} ({policy})", r["n_train"]): r for policy, r in results}
    header = "| tagger (epochs) | " + " | ".join(f"n_train = {n:,}: AUC, 1/ε_B@0.3 [epochs]" for n in sizes) + " |"
    lines = [header, "|---|" + "--:|" * len(sizes)]
    for row in rows:
        cells = []
        for n in sizes:
            r = by_key.get((row, n))
            cells.append(
                f"{r['test']['auc']:.4f}, {_number(r['test']['rejection_at_0.3'])} [{r['epochs_run']}]" if r else "—"
            )
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    taggers = args.taggers if args.taggers is not None else [t for t in models.available() if t not in SKIP]
    start = time.perf_counter()
    zoo: list[dict] = []
    reuse = {"default_epochs": args.epochs, "table_only": args.table_only}
    for tagger in taggers:
        try:
            result = run_or_reuse(run_config(args, tagger, args.n_train), args.data, output, **reuse)
        except (ImportError, ModuleNotFoundError) as err:
            print(f"--- skipping {tagger}: {err}", flush=True)
            continue
        if result is not None:
            zoo.append(result)
    policies = ("fixed", "equal-steps") if args.efficiency_epochs == "both" else (args.efficiency_epochs,)
    efficiency: list[tuple[str, dict]] = [
        (policy, r) for policy in policies for r in zoo if r["tagger"] in args.efficiency_taggers
    ]
    for policy in policies:
        for n_train in args.efficiency_sizes:
            epochs = equal_step_epochs(args, n_train) if policy == "equal-steps" else args.epochs
            for tagger in args.efficiency_taggers:
                if args.taggers is not None and tagger not in taggers:
                    continue
                config = run_config(args, tagger, n_train, epochs=epochs)
                result = run_or_reuse(config, args.data, output, **reuse)
                if result is not None:
                    efficiency.append((policy, result))
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    setup = (
        f"dataset `{args.data}`, ≤ {args.max_constituents} leading-pT constituents, {args.size} size, "
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g} (AdamW, cosine), seed {args.seed}, "
        f"{args.threads} torch thread(s) on a shared 2-core CPU"
    )
    lines = [
        "# Tagger zoo: test metrics",
        "",
        f"Command: `{command}`",
        "",
        setup + ".",
        "",
        *zoo_table(zoo),
        "",
        "## Data efficiency",
        "",
        *efficiency_table(efficiency),
        "",
    ]
    (output / "zoo.md").write_text("\n".join(lines))
    (output / "zoo.json").write_text(
        json.dumps(
            {
                "command": command,
                "setup": setup,
                "zoo": [{k: v for k, v in r.items() if k != "history"} for r in zoo],
                "efficiency": [
                    {"epoch_policy": policy, **{k: v for k, v in r.items() if k != "history"}} for policy, r in efficiency
                ],
            },
            indent=2,
        )
        + "\n"
    )
    print("\n".join(lines))
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
