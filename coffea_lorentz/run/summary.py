"""What a run did: :class:`RunSummary`, returned by :func:`coffea_lorentz.run.run_tagging`."""

from __future__ import annotations

from dataclasses import dataclass, field

from .chunks import ChunkRecord
from .fileset import InputFile

__all__ = ["RunSummary"]


@dataclass(kw_only=True)
class RunSummary:
    """What a run did.

    Attributes:
        output: the output folder (path or URL).
        files: every input file of the fileset.
        records: one record per chunk (done, skipped or failed).
        bad_files: inputs that could not be used, with the reason.
        wall_s: seconds from start to end.
        manifest: URL of ``manifest.json`` when the run is complete, else None.
        log: URL of the run's log file.
        server: what the Triton server measured during the chunks, one line per model (requests,
            jets, batches formed, queue vs compute time, advice where queueing dominates).
        stale_files: chunk files that were in the output but not in this run's plan (an input shrank
            or left the fileset), moved to ``_stale/`` (paths relative to the output, as they were).
        stray_files: other ROOT files of the output that belong to no chunk of this fileset.
        not_written: what the output could not take after the chunks (histograms and plots, the
            manifest, the log), one line each with the reason: a failure of the run (disk full, …).
        stage_s: seconds the client spent in each stage of the run, in order: ``start`` (the fileset read, the cluster
            started, the server checked, the output claimed), ``inspect`` (open every
            input, count entries), ``plan`` (chunks, stale files set aside), ``chunks`` (every chunk
            done, skipped or failed), ``verify`` (every chunk file checked at the destination),
            ``histograms``, ``manifest`` (the output listed for stray files, ``manifest.json`` written), ``log``.
    """

    output: str
    files: list[str]
    records: list[ChunkRecord] = field(default_factory=list)
    bad_files: list[InputFile] = field(default_factory=list)
    wall_s: float = 0.0
    manifest: str | None = None
    log: str | None = None
    stray_files: list[str] = field(default_factory=list)
    stale_files: list[str] = field(default_factory=list)
    not_written: list[str] = field(default_factory=list)
    histograms: dict | None = None
    server: list[str] = field(default_factory=list)
    skipped_bad_files: bool = False
    limited: bool = False
    plots: list[str] = field(default_factory=list)
    datasets: list[dict] = field(default_factory=list)
    stage_s: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every chunk of every (not skipped) file done and verified, and no chunk left out by ``max_chunks``."""
        return ((not self.bad_files or self.skipped_bad_files) and not self.limited
                and all(record.ok for record in self.records))

    @property
    def has_failures(self) -> bool:
        """Failed chunks, unusable files that were not to be skipped, or outputs not written: rerun to resume."""
        return bool(self.failed) or (bool(self.bad_files) and not self.skipped_bad_files) or bool(self.not_written)

    @property
    def failed(self) -> list[ChunkRecord]:
        return [record for record in self.records if not record.ok]

    @property
    def processed(self) -> int:
        return sum(record.status == "done" for record in self.records)

    @property
    def skipped(self) -> int:
        return sum(record.status == "skipped" for record in self.records)

    @property
    def events(self) -> int:
        """Event rows in verified output files (done now or earlier)."""
        return sum(record.rows for record in self.records if record.ok)

    @property
    def jets(self) -> int:
        return sum(record.jets for record in self.records)

    @property
    def constituents(self) -> int:
        return sum(record.constituents for record in self.records)

    @property
    def nonfinite_jets(self) -> dict[str, int]:
        """Input file → jets that had constituents with non-finite four-momenta (dropped), over every chunk."""
        counts: dict[str, int] = {}
        for record in self.records:
            if record.nonfinite_jets:
                counts[record.chunk.source] = counts.get(record.chunk.source, 0) + record.nonfinite_jets
        return counts

    @property
    def outside_domain(self) -> list[str]:
        """One line per dataset and reweighter with jets outside the reweighter's training domain, over every chunk."""
        from ..reweight.domain import outside_by_dataset, outside_line

        totals = outside_by_dataset((r.chunk.dataset, r.outside_domain) for r in self.records if r.ok)
        return [line for (dataset, name), count in sorted(totals.items())
                if (line := outside_line(dataset, name, count))]

    @property
    def weights(self) -> list[str]:
        """One line per dataset and reweighter: its per-event weights' mean, effective sample size
        (Σw)²/Σw² and clipped fraction, over every chunk (those found done with the sums stored in their files)."""
        from ..reweight.diagnostics import weight_lines

        return weight_lines((r.chunk.dataset, r.weights) for r in self.records if r.ok)

    @property
    def figures_note(self) -> str | None:
        """One line when some chunks found done were written by an older version, whose files hold no
        figures: the non-finite, training-domain and weight figures then cover the other chunks only
        (None when they cover every chunk)."""
        done = [record for record in self.records if record.ok]
        without = sum(not record.figures_stored for record in done)
        if not without:
            return None
        return (f"the non-finite, training-domain and weight figures cover {len(done) - without} of {len(done)} chunks: "
                f"the other {without} were written by an older version that did not record them "
                "(--overwrite redoes every chunk)")

    @property
    def outputs(self) -> list[str]:
        """Paths or URLs of every verified chunk file, in dataset / input / entry order."""
        done = sorted((r for r in self.records if r.ok), key=lambda r: (r.chunk.dataset, r.chunk.source, r.chunk.entry_start))
        return [f"{self.output}/{record.chunk.path}" for record in done]

    @property
    def retries(self) -> int:
        """Tries the Triton clients retried (failed requests, connections, probes) during the chunks."""
        return sum(record.retries for record in self.records)

    @property
    def retry_wait_s(self) -> float:
        """Seconds the chunks waited on an unavailable server, added up over the chunks."""
        return sum(record.retry_wait_s for record in self.records)

    @property
    def retries_line(self) -> str:
        """``3 retries, 20.4 s waited on an unavailable server`` (``none`` when there were none)."""
        if not self.retries and self.retry_wait_s < 0.05:
            return "none"
        noun = "retry" if self.retries == 1 else "retries"
        return f"{self.retries} {noun}, {self.retry_wait_s:.1f} s waited on an unavailable or busy server (summed over chunks)"

    @property
    def events_per_s(self) -> float:
        """Events processed (not skipped) per second of wall time."""
        processed = sum(record.rows for record in self.records if record.status == "done")
        return processed / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def jets_per_s(self) -> float:
        return self.jets / self.wall_s if self.wall_s > 0 else float("nan")
