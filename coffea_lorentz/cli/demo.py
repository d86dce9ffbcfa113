"""``coffea-lorentz demo``: generate a small ttbar + QCD PFNano sample and run the main job on it.

Everything comes from the project itself: Pythia 8 events clustered with FastJet into PFNano-layout
files, the shipped tagger weights and shower reweighter, the bundled Triton server and a Dask
LocalCluster. The job writes the tagger scores and the reweighting factors; the demo then checks
the scores (top-tagging AUC) and shows what the weights do to the jets (mass and multiplicity,
unweighted vs weighted, printed and plotted).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import DEFAULT_TAGGER

__all__ = ["register", "make_demo_sample"]

#: (dataset, process, pT-hat threshold in GeV, seed) of the demo sample.
DEMO_DATASETS = (("ttbar", "ttbar", 400.0, 101), ("qcd", "qcd", 400.0, 202))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate a small ttbar + QCD sample and tag it through a local Triton server on Dask",
        description=(
            "Generate (once) PFNano-layout ttbar and QCD files with Pythia 8 + FastJet under --workdir, then run "
            "`coffea-lorentz run` on them with the default tagger through a local Triton server and a Dask "
            "LocalCluster, and print where the outputs are."
        ),
    )
    parser.add_argument("--workdir", default="build/demo", help="where the sample and outputs go (default: build/demo)")
    parser.add_argument("--events", type=int, default=1000, help="events per process (default: 1000)")
    parser.add_argument("--tagger", action="append", dest="taggers", metavar="NAME", help=f"tagger(s) to run (default: {DEFAULT_TAGGER})")
    parser.add_argument("--reweighter", action="append", dest="reweighters", metavar="NAME|PATH",
                        help="reweighter(s) to apply (default: fsr, the shipped shower alpha_s variation)")
    parser.add_argument("--backend", choices=("triton", "torch"), default="triton", help="inference backend (default: triton)")
    parser.add_argument("--workers", type=int, default=2, help="Dask LocalCluster workers (default: 2)")
    parser.set_defaults(func=main)


def make_demo_sample(workdir: Path, n_events: int, workers: int = 2) -> Path:
    """Generate the demo files under ``workdir/sample`` if absent; returns the fileset JSON."""
    from ..generate.pfnano import generate_pfnano
    from ..generate.pythia import GeneratorConfig

    sample = workdir / "sample"
    sample.mkdir(parents=True, exist_ok=True)
    fileset = {}
    for dataset, process, pthat_min_gev, seed in DEMO_DATASETS:
        path = sample / f"{dataset}_{n_events}_pthat{pthat_min_gev:.0f}_seed{seed}.root"
        if not path.is_file():
            generator = GeneratorConfig(process=process, pthat_min_gev=pthat_min_gev)
            summary = generate_pfnano(path, generator=generator, n_events=n_events, seed=seed, workers=workers)
            print(f"generated {path}: {sum(summary.n_events.values())} events, {sum(summary.n_jets.values())} fat jets "
                  f"in {summary.wall_s:.1f} s")
        fileset[dataset] = {"files": {str(path.resolve()): "Events"}}
    fileset_path = workdir / "fileset.json"
    fileset_path.write_text(json.dumps(fileset, indent=2))
    return fileset_path


def _top_tagging_check(outputs: list[str], fileset_path: Path, field: str) -> str:
    """Score AUC of truth-matched top jets (ttbar) against QCD jets, both in 300–1000 GeV.

    The output files join one-to-one with their inputs (same events, same jets, same order), so
    the generator's ``FatJet_topMatched`` truth and ``FatJet_pt`` are read from the inputs.
    """
    import awkward as ak
    import numpy as np
    import uproot

    from ..metrics import auc

    inputs = {dataset: next(iter(spec["files"])) for dataset, spec in json.loads(fileset_path.read_text()).items()}
    scores, labels = [], []
    for dataset, label in (("ttbar", 1), ("qcd", 0)):
        files = sorted(p for p in map(Path, outputs) if p.parent.name == dataset)
        score = ak.to_numpy(ak.flatten(ak.concatenate([uproot.open(p)["Events"][field].array() for p in files])))
        truth = uproot.open(inputs[dataset])["Events"].arrays(["FatJet_pt", "FatJet_topMatched"])
        pt = ak.to_numpy(ak.flatten(truth["FatJet_pt"]))
        keep = (pt > 300) & (pt < 1000) & np.isfinite(score)
        if label == 1:
            keep &= ak.to_numpy(ak.flatten(truth["FatJet_topMatched"]))
        scores.append(score[keep])
        labels.append(np.full(int(keep.sum()), label))
    n_top, n_qcd = len(scores[0]), len(scores[1])
    if n_top == 0 or n_qcd == 0:
        return f"too few jets for a top-tagging check ({n_top} top-matched, {n_qcd} QCD in 300–1000 GeV)"
    value = auc(np.concatenate(labels), np.concatenate(scores))
    return f"AUC {value:.3f} for {n_top} truth-matched top jets against {n_qcd} QCD jets (pT 300–1000 GeV)"


#: Input jet observables the demo compares unweighted and weighted: branch → (label, bins, low, high).
_JET_OBSERVABLES = {
    "FatJet_msoftdrop": ("soft-drop mass [GeV]", 40, 0.0, 250.0),
    "FatJet_nConstituents": ("constituents", 40, 0.0, 160.0),
}


def _weighted_jets(outputs: list[str], fileset_path: Path, name: str, plots: Path) -> list[str]:
    """Jet mass and multiplicity per dataset, unweighted and weighted by ``FatJet_weight_<name>``.

    The output files join one-to-one with their inputs, so the observables are read from the inputs
    and the weights from the outputs. Returns printable lines; writes ``plots/weighted_<name>.png``.
    """
    import awkward as ak
    import hist
    import matplotlib
    import numpy as np
    import uproot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    from ..plotting import dataset_colours, overflow_note

    inputs = {dataset: next(iter(spec["files"])) for dataset, spec in json.loads(fileset_path.read_text()).items()}
    colours = dataset_colours(inputs)
    lines = []
    notes: dict[int, list[str]] = {index: [] for index in range(len(_JET_OBSERVABLES))}
    plots.mkdir(parents=True, exist_ok=True)
    with plt.style.context(mplhep.style.CMS):
        figure, axes = plt.subplots(1, len(_JET_OBSERVABLES), figsize=(9 * len(_JET_OBSERVABLES), 7))
        figure.subplots_adjust(wspace=0.35)
        for dataset, source in inputs.items():
            files = sorted(p for p in map(Path, outputs) if p.parent.name == dataset)
            weights = ak.to_numpy(ak.flatten(ak.concatenate(
                [uproot.open(p)["Events"][f"FatJet_weight_{name}"].array() for p in files])))
            jets = uproot.open(source)["Events"].arrays(list(_JET_OBSERVABLES))
            means = []
            for ax_index, (branch, (label, bins, low, high)) in enumerate(_JET_OBSERVABLES.items()):
                ax = axes[ax_index]
                values = ak.to_numpy(ak.flatten(jets[branch])).astype(np.float64)
                means.append(f"{label.split(' [')[0]} {values.mean():.1f} → {np.average(values, weights=weights):.1f}")
                axis = hist.axis.Regular(bins, low, high, name="x", label=label)
                plain = hist.Hist(axis).fill(values)
                weighted = hist.Hist(axis, storage=hist.storage.Weight()).fill(values, weight=weights)
                mplhep.histplot(plain, ax=ax, label=dataset, density=True, yerr=False, flow="sum",
                                color=colours[dataset])
                mplhep.histplot(weighted, ax=ax, label=f"{dataset}, weight_{name}", density=True, yerr=False,
                                linestyle="--", color=colours[dataset], flow="sum")
                note = overflow_note(plain)
                if note:
                    notes[ax_index].append(f"{dataset}: {note}")
                ax.set_xlabel(label)
                ax.set_ylabel("jets (normalised)")
            lines.append(f"weight_{name} on {dataset} jets ({len(weights)}): mean weight {weights.mean():.3f}; "
                         f"unweighted → weighted: {', '.join(means)}")
        for ax_index, ax in enumerate(axes):
            ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the curves
            if notes[ax_index]:  # entries beyond the axis, drawn in its first/last bin
                ax.text(1.0, 1.01, "\n".join(notes[ax_index]), transform=ax.transAxes, fontsize=11, ha="right",
                        va="bottom")
            ax.legend(fontsize=14, loc="upper right")
            mplhep.cms.label(data=False, ax=ax, loc=0, rlabel="")
        path = plots / f"weighted_{name}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
    lines.append(f"weight_{name}: unweighted vs weighted jets plotted in {path.resolve()}")
    return lines


def main(args: argparse.Namespace) -> int:
    from ..run import RunConfig, run_tagging
    from .run import print_summary

    workdir = Path(args.workdir)
    fileset_path = make_demo_sample(workdir, args.events, workers=max(1, args.workers))
    taggers = tuple(args.taggers or (DEFAULT_TAGGER,))
    reweighters = tuple(args.reweighters or ("fsr",))
    output = workdir / "output"
    config = RunConfig(taggers=taggers, reweighters=reweighters, backend=args.backend, n_workers=args.workers,
                       overwrite=True)
    summary = run_tagging([fileset_path], output, config)
    print_summary(summary)
    if not summary.complete:
        return 3
    for tagger in taggers:
        print(f"{tagger}: " + _top_tagging_check(summary.outputs, fileset_path, f"FatJet_{tagger}_score"))
    from ..reweight.lookup import find_reweighter

    for reweighter in reweighters:
        name = find_reweighter(reweighter).name
        for line in _weighted_jets(summary.outputs, fileset_path, name, output / "plots"):
            print(line)
    print(f"outputs: {output.resolve()}  (fileset: {fileset_path.resolve()})")
    return 0
