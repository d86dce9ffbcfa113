"""The "faults survived" table: each fault injected into a real run, and what the output holds afterwards.

Every scenario runs on small PFNano files (5 events each, ``--chunksize 1`` so that a run has many
chunks) with the identity tagger served by the bundled Triton server, on a 2-worker Dask
LocalCluster, and ends with the rows of the output compared with the input's event ids:

- rows lost:        input events with no output row;
- rows duplicated:  output rows beyond one per input event;
- chunks recomputed on resume: chunks the rerun processed although their file was already done.

Usage: ``python bench/bench_faults.py [--files 8]`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import uproot

warnings.filterwarnings("ignore")

from coffea_lorentz.errors import OutputError  # noqa: E402
from coffea_lorentz.models import pretrained  # noqa: E402
from coffea_lorentz.repository import build_repository  # noqa: E402
from coffea_lorentz.run import RunConfig, run_tagging  # noqa: E402
from coffea_lorentz.serve import ServerConfig, TritonServer, free_port  # noqa: E402
from coffea_lorentz.testing import corrupt_baskets, truncate_file, write_pfnano_fileset  # noqa: E402

TAGGER = "identity"


def losses(fileset: dict, output: Path) -> tuple[int, int]:
    """(rows lost, rows duplicated) of ``output`` against the inputs of ``fileset``.

    Each chunk file's rows are matched to input entries through its metadata record (input file,
    entry range), and their event ids are checked against the input's at those entries.
    """
    import numpy as np

    from coffea_lorentz.write import read_chunk_metadata

    covered: dict[tuple[str, str], np.ndarray] = {}
    for dataset, spec in fileset.items():
        for path in spec["files"]:
            covered[(dataset, path)] = np.zeros(uproot.open(path)["Events"].num_entries, dtype=np.int64)
    for chunk_file in sorted(output.glob("*/*.root")):
        with uproot.open(chunk_file) as file:
            record = read_chunk_metadata(file)
            events = file["Events"]["event"].array(library="np")
        start, stop = record["entry_start"], record["entry_stop"]
        expected = uproot.open(record["source"])["Events"]["event"].array(library="np", entry_start=start, entry_stop=stop)
        if not np.array_equal(events, expected):
            raise SystemExit(f"{chunk_file}: event ids differ from {record['source']} entries [{start}, {stop})")
        covered[(record["dataset"], record["source"])][start:stop] += 1
    counts = np.concatenate(list(covered.values()))
    return int((counts == 0).sum()), int(np.maximum(counts - 1, 0).sum())


def n_chunk_files(output: Path) -> int:
    return len(list(output.glob("*/*.root")))


def wait_for_files(output: Path, at_least: int, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while n_chunk_files(output) < at_least:
        if time.monotonic() > deadline:
            raise SystemExit(f"no progress in {output}")
        time.sleep(0.05)


def in_thread(function) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target():
        try:
            box["result"] = function()
        except BaseException as err:  # noqa: BLE001 - reported in the table
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def cli(fileset_path: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "coffea_lorentz.cli", "run", str(fileset_path), "--output", str(output), "--tagger",
            TAGGER, "--workers", "2", "--chunksize", "1", "--no-progress", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=8)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        tmp = Path(tmp)
        repository = build_repository(tmp / "models", {TAGGER: pretrained(TAGGER)}, intra_op_threads=1)
        ports = (free_port(), free_port(), free_port())
        config = ServerConfig(repository=repository, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2])
        server = TritonServer(config).start()
        run_options = dict(taggers=(TAGGER,), server_url=f"grpc://{server.grpc_url}", n_workers=2, chunksize=1,
                           progress=False)
        total = args.files * 5

        # 1. server killed and restarted
        fileset = write_pfnano_fileset(tmp / "in1", args.files)
        thread, box = in_thread(lambda: run_tagging(fileset, tmp / "out1", RunConfig(**run_options)))
        wait_for_files(tmp / "out1", 3)
        os.killpg(server.pid, signal.SIGKILL)
        server.stop()
        time.sleep(10.0)
        server = TritonServer(config).start()
        thread.join()
        summary = box.get("result")
        rows.append(("Triton server SIGKILLed mid-run, restarted on the same port 10 s later",
                     "run waited and completed, exit 0" if summary and summary.complete else f"failed: {box}",
                     *losses(fileset, tmp / "out1"), "no rerun needed"))

        # 2. server hung for twice the request timeout
        fileset = write_pfnano_fileset(tmp / "in2", args.files)
        hung = dict(run_options, client_options=(("timeout_s", 2.0),))
        thread, box = in_thread(lambda: run_tagging(fileset, tmp / "out2", RunConfig(**hung)))
        wait_for_files(tmp / "out2", 3)
        os.killpg(server.pid, signal.SIGSTOP)
        time.sleep(4.0)
        os.killpg(server.pid, signal.SIGCONT)
        thread.join()
        summary = box.get("result")
        rows.append(("Triton server SIGSTOPped for 2× the request timeout (2 s), then SIGCONT",
                     "run completed, exit 0" if summary and summary.complete else f"failed: {box}",
                     *losses(fileset, tmp / "out2"), "no rerun needed"))

        # 3. a truncated and a corrupted file among good ones
        fileset = write_pfnano_fileset(tmp / "in3", args.files)
        paths = list(fileset["sample"]["files"])
        for path in paths[1:3]:
            shutil.copyfile(path, path + ".good")
        truncate_file(Path(paths[1]))
        corrupt_baskets(Path(paths[2]))
        first = run_tagging(fileset, tmp / "out3", RunConfig(**run_options))
        failed_files = {r.chunk.source for r in first.failed} | {f.source for f in first.bad_files}
        done_before = n_chunk_files(tmp / "out3")
        for path in paths[1:3]:
            shutil.copyfile(path + ".good", path)
        rerun = run_tagging(fileset, tmp / "out3", RunConfig(**run_options))
        rows.append((f"1 truncated + 1 corrupted (random bytes in baskets) file among {args.files}",
                     f"{len(failed_files)} files listed with reason, {first.processed} good chunks written, exit 3; "
                     f"files replaced, rerun completed, manifest written" if rerun.complete else "rerun failed",
                     *losses(fileset, tmp / "out3"), rerun.processed - (total - done_before)))

        # 4/5. the run itself ended by SIGTERM and by SIGKILL
        for name, sig in (("SIGTERM", signal.SIGTERM), ("SIGKILL", signal.SIGKILL)):
            fileset = write_pfnano_fileset(tmp / f"in-{name}", 2 * args.files)
            fileset_path = tmp / f"fileset-{name}.json"
            fileset_path.write_text(json.dumps(fileset))
            output = tmp / f"out-{name}"
            process = subprocess.Popen(cli(fileset_path, output), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=sig == signal.SIGKILL)
            wait_for_files(output, 5)
            if sig == signal.SIGKILL:
                os.killpg(process.pid, signal.SIGKILL)  # the whole job, as a batch system's hard kill
            else:
                process.send_signal(sig)
            code = process.wait()
            time.sleep(1.0)
            done_before = n_chunk_files(output)
            rerun = subprocess.run(cli(fileset_path, output), capture_output=True, text=True)
            summary_line = next((line for line in rerun.stdout.splitlines() if "processed" in line), "")
            processed = int(summary_line.split("│")[2].split()[0]) if summary_line.count("│") >= 2 else -1
            rows.append((f"{name} to `coffea-lorentz run` mid-way ({done_before} of {2 * total} chunks done)",
                         f"exit {code}; rerun exit {rerun.returncode}"
                         f"{', manifest written' if (output / 'manifest.json').exists() else ''}",
                         *losses(fileset, output), processed - (2 * total - done_before)))

        # 6. rerun into a complete output, and a concurrent second run
        fileset = write_pfnano_fileset(tmp / "in6", args.files)
        run_tagging(fileset, tmp / "out6", RunConfig(**run_options))
        again = run_tagging(fileset, tmp / "out6", RunConfig(**run_options))
        rows.append(("the same command run again on a complete output",
                     f"{again.skipped} chunks skipped, {again.processed} processed, exit 0",
                     *losses(fileset, tmp / "out6"), again.processed))
        thread, box = in_thread(lambda: run_tagging(fileset, tmp / "out7", RunConfig(**run_options)))
        wait_for_files(tmp / "out7", 1)
        try:
            run_tagging(fileset, tmp / "out7", RunConfig(**run_options))
            refused = "not refused"
        except OutputError:
            refused = "second run refused (output in use), first completed"
        thread.join()
        rows.append(("a second run started into the same output", refused, *losses(fileset, tmp / "out7"), 0))
        server.stop()

    print("| fault | what happened | rows lost | rows duplicated | chunks recomputed on resume |")
    print("|---|---|--:|--:|--:|")
    for fault, happened, lost, duplicated, recomputed in rows:
        print(f"| {fault} | {happened} | {lost} | {duplicated} | {recomputed} |")


if __name__ == "__main__":
    main()
