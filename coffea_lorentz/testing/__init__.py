"""Test helpers, real parts only: a local Triton server, small PFNano files, an XRootD server, and
Dask workers that share no disk with the client.

- :mod:`~coffea_lorentz.testing.triton` — :func:`triton_server_fixture`, :func:`require_triton`.
- :mod:`~coffea_lorentz.testing.samples` — :func:`write_small_pfnano`, :func:`write_pfnano_fileset`,
  :func:`corrupt_baskets`, :func:`truncate_file`.
- :mod:`~coffea_lorentz.testing.xrootd` — :class:`XRootDServer`, :func:`xrootd_server_fixture`.
- :mod:`~coffea_lorentz.testing.dask_workers` — :class:`IsolatedDaskCluster`,
  :func:`isolated_dask_cluster_fixture`.
- :mod:`~coffea_lorentz.testing.gateway` — :class:`DaskGatewayServer`, :func:`dask_gateway_server_fixture`.
- :mod:`~coffea_lorentz.testing.slurm` — :class:`LocalSlurmCluster`, :func:`slurm_cluster_fixture`.
- :mod:`~coffea_lorentz.testing.processes` — starting and stopping helper processes.

In a ``conftest.py``::

    from coffea_lorentz.testing import triton_server_fixture

    triton_server = triton_server_fixture(taggers=("identity",), scope="session")

    @pytest.mark.slow
    def test_something(triton_server):
        client = tritonclient.grpc.InferenceServerClient(triton_server.grpc_url)

The fixture builds a model repository in a pytest temporary directory, starts the server on free
ports, yields the running :class:`~coffea_lorentz.serve.TritonServer` (``.grpc_url``,
``.http_url``, ``.config.repository``) and stops it afterwards. When the server environment is not
set up, tests using it are skipped with the reason (or fail, with ``skip_if_unavailable=False``).

Real storage and workers that share no disk with the client (all on loopback, real processes):

- :class:`XRootDServer` runs Debian's ``xrootd`` daemon on a data root; fsspec (``fsspec-xrootd``)
  and uproot reach it at ``root://127.0.0.1:PORT//abs/path`` (see the class for the URL form and the
  quirks of the fsspec filesystem); :func:`xrootd_server_fixture` makes the pytest fixture.
- :class:`IsolatedDaskCluster` runs a ``dask scheduler`` and ``dask worker`` processes, each worker in
  a private mount namespace with an empty tmpfs over every hidden directory, so a worker neither sees
  the client's files there nor leaves its own behind; :func:`isolated_dask_cluster_fixture` makes the
  pytest fixture.

Under ``make test`` (``COFFEA_LORENTZ_REQUIRE_STORAGE=1``, :func:`require_storage`) these fixtures
fail instead of skipping when a part is missing.

A batch pool: :class:`LocalSlurmCluster` runs Debian's ``munged``, ``slurmctld`` and ``slurmd`` as a
one-node Slurm cluster on loopback, all state in a temporary directory; the client commands (and
dask-jobqueue's ``sbatch``) find it through ``SLURM_CONF``. :func:`slurm_cluster_fixture` makes the
pytest fixture, which fails instead of skipping under ``make test`` (``COFFEA_LORENTZ_REQUIRE_SLURM=1``,
:func:`require_slurm`).
"""

from .gateway import DaskGatewayServer, dask_gateway_server_fixture, gateway_unavailable_reason
from .dask_workers import IsolatedDaskCluster, isolated_dask_cluster_fixture, isolation_unavailable_reason
from .processes import STORAGE_ENV_VARIABLE, require_storage
from .slurm import LocalSlurmCluster, require_slurm, slurm_cluster_fixture, slurm_unavailable_reason
from .samples import corrupt_baskets, truncate_file, write_pfnano_fileset, write_small_pfnano
from .triton import require_triton, server_unavailable_reason, triton_server_fixture
from .xrootd import XRootDServer, xrootd_server_fixture, xrootd_unavailable_reason

__all__ = [
    "server_unavailable_reason",
    "triton_server_fixture",
    "require_triton",
    "write_small_pfnano",
    "write_pfnano_fileset",
    "corrupt_baskets",
    "truncate_file",
    "STORAGE_ENV_VARIABLE",
    "require_storage",
    "XRootDServer",
    "xrootd_unavailable_reason",
    "xrootd_server_fixture",
    "IsolatedDaskCluster",
    "isolation_unavailable_reason",
    "isolated_dask_cluster_fixture",
    "DaskGatewayServer",
    "gateway_unavailable_reason",
    "dask_gateway_server_fixture",
    "LocalSlurmCluster",
    "require_slurm",
    "slurm_unavailable_reason",
    "slurm_cluster_fixture",
]
