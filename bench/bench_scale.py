"""A run's cost as it grows: 1 to 1000 input files and up to 10,000 chunks, stage by stage.

One small PFNano file of generated QCD events is made once (``--events`` events, cut down to the
columns a run reads) and copied ``N`` times; each case runs ``coffea-lorentz run``'s entry point
(:func:`coffea_lorentz.run.run_tagging`) over the copies with the identity tagger in-process
(``--tagger identity --backend torch``), so the run's own overheads show, not a model's. Each case
runs in a process of its own, so its client's peak memory (``ru_maxrss``) is its own. The run
reports the client's seconds per stage (``RunSummary.stage_s``): inspect (open every input, count
entries), plan (chunks, stale files), chunks (every chunk processed), verify (every chunk file read
back from the destination), histograms, manifest, log. The same columns of the same entry ranges
read with plain uproot in one process are the reference (``uproot`` column; ``ratio`` = run ÷ uproot).

Usage::

    python bench/bench_scale.py [--files 1 10 100 1000] [--chunks-per-file 10] [--events 20]
                                [--cluster local --workers 2] [--profile 1000] [--output DIR] [--source FILE]

``--chunks-per-file`` cuts each file into that many chunks (``--chunksize`` = events ÷ chunks per
file), so 1000 files give 10,000 chunks. ``--profile N`` writes the cProfile statistics of the
N-file case's client next to the table (``scale_profile_N.txt``) and prints its top lines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=RuntimeWarning)

#: The columns of a generated PFNano file that a run reads (the scale inputs keep only these).
COLUMNS = ("run", "luminosityBlock", "event", "FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass",
           "FatJet_nConstituents", "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass", "PFCands_pdgId",
           "PFCands_charge", "FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx")
STAGES = ("start", "inspect", "plan", "chunks", "verify", "histograms", "manifest", "log")


def make_source(path: Path, n_events: int, seed: int = 5) -> Path:
    """Generate ``n_events`` QCD events once and keep only :data:`COLUMNS` (cached at ``path``)."""
    if path.is_file():
        return path
    import awkward as ak
    import uproot

    from coffea_lorentz.generate.pfnano import generate_pfnano
    from coffea_lorentz.generate.pythia import GeneratorConfig
    from coffea_lorentz.testing.samples import write_nanoaod_tree

    path.parent.mkdir(parents=True, exist_ok=True)
    full = path.with_name(path.stem + "_full.root")
    generate_pfnano(full, generator=GeneratorConfig(process="qcd", pthat_min_gev=200.0), n_events=n_events, seed=seed, workers=1)
    with uproot.open(full) as file:
        arrays = file["Events"].arrays(list(COLUMNS), library="ak")
    tree: dict = {name: ak.to_numpy(arrays[name]) for name in ("run", "luminosityBlock", "event")}
    for collection in ("FatJet", "PFCands", "FatJetPFCands"):
        fields = [name.split("_", 1)[1] for name in COLUMNS if name.split("_", 1)[0] == collection]
        tree[collection] = ak.zip({field: arrays[f"{collection}_{field}"] for field in fields})
    write_nanoaod_tree(path.with_suffix(".tmp"), tree).replace(path)
    full.unlink()
    return path


def make_inputs(source: Path, folder: Path, n_files: int) -> list[Path]:
    """``n_files`` copies of ``source`` in ``folder`` (one dataset)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"part{i:04d}.root" for i in range(n_files)]
    for path in paths:
        if not path.is_file():
            shutil.copyfile(source, path)
    return paths


def plain_uproot_s(paths: list[Path], n_events: int, chunksize: int) -> float:
    """Seconds to read :data:`COLUMNS` of every chunk's entry range of every file with plain uproot, in one process."""
    import uproot

    started = time.perf_counter()
    for path in paths:
        with uproot.open(path) as file:
            tree = file["Events"]
            names = [name for name in COLUMNS if name in tree]
            for start in range(0, n_events, chunksize):
                tree.arrays(names, entry_start=start, entry_stop=min(start + chunksize, n_events), library="ak")
    return time.perf_counter() - started


def one_case(args: argparse.Namespace) -> dict:
    """Run one case in this process; returns its row (seconds per stage, chunks, peak memory)."""
    from coffea_lorentz.run import RunConfig, run_tagging

    source = Path(args.source) if args.source else make_source(Path(args.cache) / f"scale_qcd_{args.events}.root",
                                                                args.events)
    paths = make_inputs(source, Path(args.cache) / "inputs" / source.stem, args.n_files)
    chunksize = max(1, math.ceil(args.events / args.chunks_per_file))
    config = RunConfig(taggers=("identity",), backend="torch", cluster=args.cluster, n_workers=args.workers,
                       chunksize=chunksize, progress=False)
    output = Path(args.output) / f"files{args.n_files}"
    shutil.rmtree(output, ignore_errors=True)
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    started = time.perf_counter()
    summary = run_tagging({"scale": {"files": {str(p): "Events" for p in paths}}}, output, config)
    wall_s = time.perf_counter() - started
    if profile is not None:
        import io
        import pstats

        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(60)
        Path(args.profile_out).write_text(text.getvalue())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"files": args.n_files, "chunks": len(summary.records), "chunksize": chunksize,
           "done": sum(record.ok for record in summary.records), "failed": len(summary.failed),
           "complete": summary.complete, "manifest_chunks": 0, "wall_s": wall_s, "peak_rss_mib": peak_mib,
           "stage_s": {stage: summary.stage_s.get(stage, 0.0) for stage in STAGES}}
    if summary.manifest:
        row["manifest_chunks"] = len(json.loads((output / "manifest.json").read_text())["chunks"])
    row["uproot_s"] = plain_uproot_s(paths, args.events, chunksize)
    if not args.keep:
        shutil.rmtree(output, ignore_errors=True)
    return row


def run_case(args: argparse.Namespace, n_files: int) -> dict:
    """:func:`one_case` in a fresh Python process (its own peak memory, no state from the cases before)."""
    command = [sys.executable, __file__, "--one-case", str(n_files), "--events", str(args.events),
               "--chunks-per-file", str(args.chunks_per_file), "--cluster", args.cluster, "--workers", str(args.workers),
               "--cache", args.cache, "--output", args.output]
    if args.source:
        command += ["--source", args.source]
    if args.keep:
        command.append("--keep")
    if n_files == args.profile:
        command += ["--profile", str(n_files), "--profile-out", str(Path(args.output) / f"scale_profile_{n_files}.txt")]
    root = str(Path(__file__).resolve().parents[1])  # this checkout's coffea_lorentz, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"bench case {n_files} files failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    """The scale table: per stage seconds and milliseconds per file (inspect) or per chunk (the others)."""
    head = (f"{'files':>6} {'chunks':>6} {'inspect s':>9} {'ms/file':>7} {'plan s':>6} {'chunks s':>8} {'ms/chunk':>8} "
            f"{'verify s':>8} {'ms/chunk':>8} {'hist s':>6} {'manif s':>7} {'log s':>5} {'total s':>7} {'ms/chunk':>8} "
            f"{'peak MiB':>8} {'uproot s':>8} {'ratio':>6}")
    lines = [head]
    for row in rows:
        stage, n, files = row["stage_s"], max(row["chunks"], 1), max(row["files"], 1)
        lines.append(
            f"{row['files']:>6} {row['chunks']:>6} {stage['inspect']:>9.2f} {1e3 * stage['inspect'] / files:>7.1f} "
            f"{stage['plan']:>6.3f} {stage['chunks']:>8.1f} {1e3 * stage['chunks'] / n:>8.1f} {stage['verify']:>8.2f} "
            f"{1e3 * stage['verify'] / n:>8.2f} {stage['histograms']:>6.2f} {stage['manifest']:>7.3f} {stage['log']:>5.3f} "
            f"{row['wall_s']:>7.1f} {1e3 * row['wall_s'] / n:>8.1f} {row['peak_rss_mib']:>8.0f} {row['uproot_s']:>8.2f} "
            f"{row['wall_s'] / max(row['uproot_s'], 1e-9):>6.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1, 10, 100, 1000], help="input files per case")
    parser.add_argument("--chunks-per-file", type=int, default=10, help="chunks each file is cut into (default 10)")
    parser.add_argument("--events", type=int, default=20, help="events per input file (default 20)")
    parser.add_argument("--cluster", default="local", help="run --cluster: local (default), futures, in-process")
    parser.add_argument("--workers", type=int, default=2, help="workers of the cluster (default 2)")
    parser.add_argument("--profile", type=int, default=0, help="profile the client of the case with this many files")
    parser.add_argument("--source", default=None, help="a PFNano file to copy instead of generating one (its "
                        "entries must equal --events)")
    parser.add_argument("--cache", default="build/bench/scale", help="where the generated input and its copies live")
    parser.add_argument("--output", default=None, help="where the runs write (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep each case's output folder")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--one-case", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_case:
        args.n_files = args.one_case
        print(json.dumps(one_case(args)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        args.output = args.output or scratch
        Path(args.output).mkdir(parents=True, exist_ok=True)
        rows = []
        for n_files in args.files:
            rows.append(run_case(args, n_files))
            print(f"  {n_files} files done: {rows[-1]['chunks']} chunks in {rows[-1]['wall_s']:.1f} s", file=sys.stderr,
                  flush=True)
        print(f"identity tagger in-process, --cluster {args.cluster} --workers {args.workers}, {args.events} events "
              f"per file, {args.chunks_per_file} chunks per file")
        print(table(rows))
        if args.profile and args.profile in args.files:
            profile = Path(args.output) / f"scale_profile_{args.profile}.txt"
            print(f"\nclient profile of the {args.profile}-file case (cumulative):")
            print("\n".join(profile.read_text().splitlines()[:45]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
