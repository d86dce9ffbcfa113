"""Throughput of each stage of the pipeline on one file, as ratios measured in one run.

Stages, each timed on the same file in this process (one worker's view), best of ``--repeat``:

1. ``read``           — uproot reads the branches the constituents need (no NanoEvents).
2. ``read+batch``     — NanoEvents → constituents → padded buckets + mask.
3. ``e2e identity``   — the processor's full chunk path (read, batch, gRPC to the local Triton
                        server, unflatten, atomic write) with the ``identity`` model.
4. ``e2e <tagger>``   — the same with a real tagger, through Triton and in-process torch.

Usage: ``python bench/bench_pipeline.py [FILE] [--tagger lorentznet] [--repeat 3]``; without FILE a
PFNano file of generated ttbar events is made under ``build/bench/``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import uproot

warnings.filterwarnings("ignore", category=RuntimeWarning)

from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema  # noqa: E402

from coffea_lorentz.batch import BatchConfig, make_batches  # noqa: E402
from coffea_lorentz.infer import BackendSpec  # noqa: E402
from coffea_lorentz.processors.tagger import TaggerProcessor  # noqa: E402
from coffea_lorentz.read import REQUIRED_BRANCHES, jet_constituents  # noqa: E402
from coffea_lorentz.runner import default_max_constituents  # noqa: E402


def open_events(path: Path, n_events: int):
    metadata = {"filename": str(path), "entrystart": 0, "entrystop": n_events, "dataset": "bench"}
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual",
                                       entry_stop=n_events, metadata=metadata).events()


def best_of(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def default_input() -> Path:
    from coffea_lorentz.generate.pfnano import generate_pfnano
    from coffea_lorentz.generate.pythia import GeneratorConfig

    path = Path("build/bench/ttbar_2000_seed11.root")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate_pfnano(path, generator=GeneratorConfig(process="ttbar"), n_events=2000, seed=11, workers=2)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path, help="PFNano file (default: generated ttbar events)")
    parser.add_argument("--tagger", default="lorentznet")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions of the fast stages (best kept)")
    parser.add_argument("--max-constituents", type=int, default=None,
                        help="constituents kept per jet (default: what the tagger was trained on, as in a run)")
    args = parser.parse_args()
    path = args.file or default_input()

    with uproot.open(path) as file:
        tree = file["Events"]
        branches = [b for b in (*REQUIRED_BRANCHES, "FatJetPFCands_jetIdx", "FatJet_nConstituents") if b in tree]
        n_events = tree.num_entries
        n_jets = int(tree["nFatJet"].array(library="np").sum())

    def read_only():
        with uproot.open(path) as file:
            file["Events"].arrays(branches, library="ak")

    config = BatchConfig(max_constituents=args.max_constituents or default_max_constituents((args.tagger,)))

    def read_batch():
        make_batches(jet_constituents(open_events(path, n_events), source=str(path)), config)

    rows = [("read", best_of(args.repeat, read_only)), ("read+batch", best_of(args.repeat, read_batch))]

    from coffea_lorentz.models import pretrained
    from coffea_lorentz.repository import build_repository
    from coffea_lorentz.serve import ServerConfig, TritonServer

    with tempfile.TemporaryDirectory() as tmp:
        repository = build_repository(Path(tmp) / "models", {name: pretrained(name) for name in ("identity", args.tagger)})
        with TritonServer(ServerConfig(repository=repository)) as server:
            for tagger, kind in (("identity", "triton"), (args.tagger, "triton"), (args.tagger, "torch")):
                spec = BackendSpec(tagger=tagger, kind=kind, url=server.grpc_url)
                proc = TaggerProcessor(backends=[spec], output_dir=Path(tmp) / "out", batch_config=config)
                proc.process(open_events(path, 20))  # warm-up: connect, load the model
                repeat = args.repeat if tagger == "identity" else 1  # a real tagger is slow enough to time once
                rows.append((f"e2e {tagger} ({kind})", best_of(repeat, lambda: proc.process(open_events(path, n_events)))))

    reference = dict(rows)["read+batch"]
    print(f"file: {path}  events: {n_events}  fat jets: {n_jets}  constituents kept: {config.max_constituents}  "
          f"best of {args.repeat} (real taggers: one timed run)")
    print(f"{'stage':<28}{'events/s':>12}{'jets/s':>12}{'÷ read+batch':>14}")
    for name, seconds in rows:
        print(f"{name:<28}{n_events / seconds:>12,.0f}{n_jets / seconds:>12,.0f}{reference / seconds:>14.2f}")


if __name__ == "__main__":
    main()
