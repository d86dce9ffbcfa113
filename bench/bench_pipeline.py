"""Time of each stage of one chunk's path, and what a request costs, on one file in one process.

    .venv/bin/python bench/bench_pipeline.py [FILE] [--tagger lorentznet|none] [--repeat 5]
        [--max-constituents N]

Without FILE a PFNano file of 2000 generated ttbar events is made under ``build/bench/``. One
local Triton server (serving defaults) serves ``identity``, a second copy ``identity_2`` and the
tagger. Stages, each on the whole file as one chunk (one worker's view):

- ``read (uproot)``        — uproot reads the branches the constituents need (no NanoEvents);
- ``read``                 — NanoEvents → constituents (:func:`coffea_lorentz.read.jet_constituents`);
- ``batch``                — constituents → padded buckets + mask (:func:`coffea_lorentz.batch.make_batches`);
- ``read+batch``           — the two above in one go, the reference of the ratios;
- ``infer identity``       — the batches of ``batch`` scored through the server (``TritonBackend.infer_batches``);
- ``infer identity ×2 …``  — the batches through two served identity models, one after the other
                             and together (each in its own thread, as :func:`tag_events` runs them);
- ``unflatten+write``      — scores back to jets and events, atomic ROOT write of the chunk file
                             (the event ids and copied branches read from the file; opening it not counted);
- ``e2e identity``         — the processor's whole chunk path (``TaggerProcessor.process``);
- ``e2e identity ×2``      — the same with two identity taggers (two served models);
- ``e2e TAGGER``           — the same with a real tagger, through Triton and in-process torch (one run each).

All but the real-tagger rows run ``--repeat`` times, interleaved (each repetition runs every stage,
in an order rotated by one each time), and the best (minimum) and the median are printed: on a
shared machine the best is the least disturbed. The last lines give the end-to-end identity
throughput ÷ read+batch, and the end-to-end time ÷ the sum of its stages (read + batch + infer +
unflatten/write, bests): below 1 means stages overlap, above 1 that the processor adds work of its own.

The request-cost lines time a 1-jet and a full ``max_batch_size``-jet request of length
``max_constituents`` (medians of interleaved repetitions): the fixed cost of a request and the cost
of one padded constituent slot, whose ratio is what ``BatchConfig.request_cost_slots`` stands for.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import uproot

warnings.filterwarnings("ignore", category=RuntimeWarning)

from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema  # noqa: E402

from coffea_lorentz.batch import Batch, BatchConfig, make_batches, plan_batches, scatter, unflatten  # noqa: E402
from coffea_lorentz.infer import BackendSpec, TritonBackend  # noqa: E402
from coffea_lorentz.pipeline import _call_each  # noqa: E402 - how tag_events runs several backends
from coffea_lorentz.processors.tagger import TaggerProcessor, chunk_of  # noqa: E402
from coffea_lorentz.read import REQUIRED_BRANCHES, jet_constituents  # noqa: E402
from coffea_lorentz.run import default_max_constituents  # noqa: E402
from coffea_lorentz.write import write_chunk  # noqa: E402


def open_events(path: Path, n_events: int):
    metadata = {"filename": str(path), "entrystart": 0, "entrystop": n_events, "dataset": "bench"}
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual",
                                       entry_stop=n_events, metadata=metadata).events()


def interleaved(stages: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Wall seconds of each stage over ``repeat`` repetitions, each running every stage once in an
    order rotated by one per repetition; a stage that returns a float reports its own seconds
    (the part of it that counts)."""
    names = list(stages)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repetition in range(repeat):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            result = stages[name]()
            times[name].append(result if isinstance(result, float) else time.perf_counter() - start)
    return times


def default_input() -> Path:
    from coffea_lorentz.generate.pfnano import generate_pfnano
    from coffea_lorentz.generate.pythia import GeneratorConfig

    path = Path("build/bench/ttbar_2000_seed11.root")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate_pfnano(path, generator=GeneratorConfig(process="ttbar"), n_events=2000, seed=11, workers=2)
    return path


def full_batch(n_jets: int, length: int, seed: int = 0) -> Batch:
    """``n_jets`` jets with ``length`` real massless constituents each (pT 0.5–100 GeV)."""
    rng = np.random.default_rng(seed)
    pt = rng.exponential(15.0, (n_jets, length)) + 0.5
    eta, phi = rng.normal(0, 0.3, (2, n_jets, length))
    p4 = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1).astype(np.float32)
    return Batch(p4=p4, mask=np.ones((n_jets, length), bool), jet_index=np.arange(n_jets))


def request_cost(backend: TritonBackend, config: BatchConfig, repeat: int) -> tuple[float, float]:
    """(fixed seconds per request, seconds per padded constituent slot) from a 1-jet and a full request."""
    length, size = config.max_constituents, config.max_batch_size
    one, full = [full_batch(1, length)], [full_batch(size, length)]
    times = interleaved({"one": lambda: backend.infer_batches(one), "full": lambda: backend.infer_batches(full)},
                        repeat)
    one_s, full_s = statistics.median(times["one"]), statistics.median(times["full"])
    return one_s, max(full_s - one_s, 0.0) / ((size - 1) * length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path, help="PFNano file (default: generated ttbar events)")
    parser.add_argument("--tagger", default="lorentznet", help="a real tagger for the last rows; 'none' skips them")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved repetitions of the fast stages")
    parser.add_argument("--max-constituents", type=int, default=None,
                        help="constituents kept per jet (default: what the tagger was trained on, as in a run)")
    args = parser.parse_args()
    path = args.file or default_input()
    tagger = None if args.tagger == "none" else args.tagger

    with uproot.open(path) as file:
        tree = file["Events"]
        branches = [b for b in (*REQUIRED_BRANCHES, "FatJetPFCands_jetIdx", "FatJet_nConstituents") if b in tree]
        n_events = tree.num_entries
        n_jets = int(tree["nFatJet"].array(library="np").sum())

    config = BatchConfig(max_constituents=args.max_constituents or default_max_constituents((tagger or "identity",)))
    jets = jet_constituents(open_events(path, n_events), source=str(path))
    batches = make_batches(jets, config)
    plan, unmerged = plan_batches(jets, config), plan_batches(jets, replace(config, request_cost_slots=0))

    from coffea_lorentz.models import pretrained
    from coffea_lorentz.repository import build_repository
    from coffea_lorentz.serve import ServerConfig, TritonServer

    served = {"identity": pretrained("identity"), "identity_2": pretrained("identity")}
    if tagger:
        served[tagger] = pretrained(tagger)
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repository = build_repository(Path(tmp) / "models", served)
        with TritonServer(ServerConfig(repository=repository)) as server:
            def processor(*specs: BackendSpec) -> TaggerProcessor:
                proc = TaggerProcessor(backends=list(specs), output=Path(tmp) / "out", batch_config=config)
                proc.process(open_events(path, 20))  # warm-up: connect, load the model
                return proc

            identity = BackendSpec(tagger="identity", kind="triton", url=server.grpc_url)
            identity_2 = BackendSpec(tagger="identity_2", kind="triton", url=server.grpc_url)
            one, two = processor(identity), processor(identity, identity_2)
            backend = TritonBackend(server.grpc_url, "identity")
            outputs = backend.infer_batches(batches)
            backend_2 = TritonBackend(server.grpc_url, "identity_2")
            backend_2.infer_batches(batches)  # connects
            both = {"identity": backend, "identity_2": backend_2}

            def unflatten_write() -> float:
                events = open_events(path, n_events)  # opened as in e2e; the opening counts under "read"
                start = time.perf_counter()
                per_jet = unflatten(scatter(batches, outputs, jets.total_jets)[:, 1], jets.n_jets)
                write_chunk(events, one.output, jet_branches={"identity_score": per_jet},
                            metadata=chunk_of(events).metadata(one.settings), copy_branches=one.copy_branches)
                return time.perf_counter() - start

            def read_uproot() -> None:
                with uproot.open(path) as file:
                    file["Events"].arrays(branches, library="ak")

            rows = interleaved({
                "read (uproot)": read_uproot,
                "read": lambda: jet_constituents(open_events(path, n_events), source=str(path)),
                "batch": lambda: make_batches(jets, config),
                "read+batch": lambda: make_batches(jet_constituents(open_events(path, n_events), source=str(path)),
                                                   config),
                "infer identity": lambda: backend.infer_batches(batches),
                "infer identity ×2, in turn": lambda: [b.infer_batches(batches) for b in both.values()],
                "infer identity ×2, together": lambda: _call_each(both, lambda b: b.infer_batches(batches)),
                "unflatten+write": unflatten_write,
                "e2e identity": lambda: one.process(open_events(path, n_events)),
                "e2e identity ×2": lambda: two.process(open_events(path, n_events)),
            }, args.repeat)
            fixed_s, slot_s = request_cost(backend, config, max(args.repeat, 5) * 4)
            costs = [("identity", fixed_s, slot_s)]
            if tagger:
                for kind in ("triton", "torch"):
                    proc = processor(BackendSpec(tagger=tagger, kind=kind, url=server.grpc_url))
                    start = time.perf_counter()
                    proc.process(open_events(path, n_events))
                    rows[f"e2e {tagger} ({kind})"] = [time.perf_counter() - start]
                costs.append((tagger, *request_cost(TritonBackend(server.grpc_url, tagger), config, 3)))

    best = {name: min(values) for name, values in rows.items()}
    reference = best["read+batch"]
    print(f"file: {path}  events: {n_events}  fat jets: {n_jets}  constituents kept: {config.max_constituents}  "
          f"requests per tagger: {len(plan)} ({len(unmerged)} without tail merging), padded slots "
          f"{plan.padding_ratio:.3f}x real constituents ({unmerged.padding_ratio:.3f}x without); "
          f"{args.repeat} interleaved repetitions (real taggers: one run)")
    print(f"{'stage':<32}{'best s':>9}{'median s':>10}{'events/s':>11}{'jets/s':>10}{'÷ read+batch':>14}")
    for name, values in rows.items():
        seconds = best[name]
        print(f"{name:<32}{seconds:>9.3f}{statistics.median(values):>10.3f}{n_events / seconds:>11,.0f}"
              f"{n_jets / seconds:>10,.0f}{reference / seconds:>14.2f}")
    stages = best["read"] + best["batch"] + best["infer identity"] + best["unflatten+write"]
    print(f"e2e identity ÷ (read+batch) throughput: {reference / best['e2e identity']:.2f}; "
          f"e2e identity time ÷ sum of its stages: {best['e2e identity'] / stages:.2f}")
    for name, fixed, slot in costs:
        print(f"request cost, {name}: {fixed * 1e3:.2f} ms fixed, {slot * 1e6:.3f} µs per padded slot "
              f"(a request ≈ {fixed / slot if slot else float('inf'):,.0f} slots; BatchConfig.request_cost_slots = "
              f"{config.request_cost_slots})")


if __name__ == "__main__":
    main()
