"""What a LocalCluster worker that this run started may print on the run's console.

The run's own workers share its terminal. When the run ends — finished, Ctrl-C or SIGTERM — it
closes the scheduler, and a worker whose heartbeat was on the way logs "Failed to communicate with
scheduler during heartbeat" with a traceback before its nanny stops it: a run that ended as it
should would print tens of lines. :class:`QuietSchedulerGone` drops that one record in each
worker. A scheduler that this run started lives in the run's own process, so the record can only
mean that the run is ending; any real failure of a task still reaches the run through its future.
"""

from __future__ import annotations

import logging

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["QuietSchedulerGone", "HEARTBEAT_FAILED"]

HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat"
"""The start of the record that ``distributed.worker`` logs when a heartbeat finds the scheduler gone."""


class _DropHeartbeatFailure(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(HEARTBEAT_FAILED)


class QuietSchedulerGone(WorkerPlugin):
    """Installed on every worker of a LocalCluster this run owns (also on one its nanny restarts)."""

    name = "coffea-lorentz-quiet-scheduler-gone"
    idempotent = True

    def setup(self, worker) -> None:
        worker_logger = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _DropHeartbeatFailure) for f in worker_logger.filters):
            worker_logger.addFilter(_DropHeartbeatFailure())
