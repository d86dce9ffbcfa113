"""Fixtures of the storage tests: a real XRootD server and Dask workers that share no disk with the client.

Both are real processes on loopback, one per module. Where a part is missing the tests are skipped
with the reason, or fail under ``make test`` (``COFFEA_LORENTZ_REQUIRE_STORAGE=1``).
"""

from __future__ import annotations

from coffea_lorentz.testing import isolated_dask_cluster_fixture, xrootd_server_fixture

#: ``root://127.0.0.1:PORT/`` serving a fresh pytest temporary directory.
xrootd_server = xrootd_server_fixture(scope="module")

#: Two ``dask worker`` processes that see an empty tmpfs over pytest's whole base temporary
#: directory, so no test's ``tmp_path`` reaches them.
isolated_cluster = isolated_dask_cluster_fixture(2, scope="module")
