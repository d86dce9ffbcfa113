"""Resume overhead: rerunning into an output where half the fileset is done, against a fresh run of
only the missing half, measured side by side (interleaved repetitions, medians).

A fileset of ``--files`` copies (20) of one PFNano file of generated ttbar events; a reference run
writes every chunk once. Each repetition then times, in alternating order:

- ``resume``: an output holding the chunk files of the first half (copied from the reference),
  run over the whole fileset — the done chunks are verified and skipped, the rest processed;
- ``fresh``:  an empty output, run over the second half only.

Both include everything a user waits for (local Triton server or in-process torch, Dask cluster,
file inspection, verification, manifest). The ratio resume ÷ fresh is the overhead of resuming.

Usage: ``python bench/bench_resume.py [--files 20] [--events 400] [--repeat 3] [--backend triton] [--workers 2]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import uproot

warnings.filterwarnings("ignore", category=RuntimeWarning)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import default_input  # noqa: E402

from coffea_lorentz.run import RunConfig, run_tagging  # noqa: E402


def make_inputs(source: Path, folder: Path, n_files: int, n_events: int) -> list[Path]:
    """``n_files`` files holding the first ``n_events`` events of ``source`` (distinct paths, one chunk each)."""
    folder.mkdir(parents=True, exist_ok=True)
    with uproot.open(source) as file:
        arrays = file["Events"].arrays(library="ak", entry_stop=n_events)
    first = folder / "part00.root"
    with uproot.recreate(first) as out:
        out["Events"] = {name: arrays[name] for name in arrays.fields}
    paths = [first]
    for i in range(1, n_files):
        paths.append(folder / f"part{i:02d}.root")
        shutil.copyfile(first, paths[-1])
    return paths


def timed_run(paths: list[Path], output: Path, config: RunConfig) -> tuple[float, object]:
    started = time.perf_counter()
    summary = run_tagging({"ttbar": {"files": {str(p): "Events" for p in paths}}}, output, config)
    wall_s = time.perf_counter() - started
    if not summary.complete:
        raise SystemExit(f"bench run into {output} did not complete: {[r.reason for r in summary.failed]}")
    return wall_s, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--events", type=int, default=400, help="events per file (one chunk per file)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=("triton", "torch"), default="triton")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    config = RunConfig(backend=args.backend, n_workers=args.workers, chunksize=args.events, progress=False)
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        tmp = Path(tmp)
        paths = make_inputs(default_input(), tmp / "inputs", args.files, args.events)
        half = args.files // 2
        _, reference = timed_run(paths, tmp / "reference", config)
        done_half = [url for url in reference.outputs if any(f"/{p.stem}-" in url for p in paths[:half])]
        times: dict[str, list[float]] = {"resume": [], "fresh": []}
        for rep in range(args.repeat):
            order = ("resume", "fresh") if rep % 2 == 0 else ("fresh", "resume")
            for variant in order:
                output = tmp / f"{variant}-{rep}"
                if variant == "resume":
                    shutil.copytree(tmp / "reference", output, ignore=shutil.ignore_patterns("*.root", "manifest.json", "_logs"))
                    for url in done_half:
                        target = output / Path(url).relative_to(tmp / "reference")
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(url, target)
                    wall_s, summary = timed_run(paths, output, config)
                    assert (summary.skipped, summary.processed) == (half, args.files - half), (summary.skipped, summary.processed)
                else:
                    wall_s, summary = timed_run(paths[half:], output, config)
                    assert summary.processed == args.files - half
                times[variant].append(wall_s)
                print(f"rep {rep} {variant:6s} {wall_s:6.1f} s", flush=True)
        resume, fresh = statistics.median(times["resume"]), statistics.median(times["fresh"])
        print(f"\n{args.files} files × {args.events} events, half done; backend {args.backend}, {args.workers} workers, "
              f"{args.repeat} interleaved repetitions")
        print(f"median resume (all {args.files} files, {half} skipped): {resume:.1f} s")
        print(f"median fresh  ({args.files - half} missing files only):  {fresh:.1f} s")
        print(f"resume ÷ fresh = {resume / fresh:.2f}")


if __name__ == "__main__":
    main()
