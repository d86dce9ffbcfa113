"""A real XRootD server: fsspec writes, renames, lists and reads; uproot reads ``root://`` URLs."""

from __future__ import annotations

import os
import socket

import awkward as ak
import fsspec
import numpy as np
import pytest
import uproot

from coffea_lorentz.errors import InvalidInputError, ServerStartError
from coffea_lorentz.testing import XRootDServer, require_storage, write_small_pfnano, xrootd_unavailable_reason


def test_write_rename_list_read(xrootd_server):
    fs = xrootd_server.filesystem()
    fs.mkdir("/run/dataset")
    payload = bytes(range(256)) * 40
    with fs.open("/run/dataset/chunk_0-9.root.tmp", "wb") as f:
        f.write(payload)
    fs.mv("/run/dataset/chunk_0-9.root.tmp", "/run/dataset/chunk_0-9.root")

    listing = fs.ls("/run/dataset", detail=True)
    assert [(entry["name"], entry["size"], entry["type"]) for entry in listing] == [
        ("/run/dataset/chunk_0-9.root", len(payload), "file")
    ]
    assert not fs.exists("/run/dataset/chunk_0-9.root.tmp")
    with fs.open("/run/dataset/chunk_0-9.root", "rb") as f:
        assert f.read() == payload
    assert xrootd_server.local_path("/run/dataset/chunk_0-9.root").read_bytes() == payload


def test_uproot_reads_a_root_file_from_its_url(xrootd_server, tmp_path):
    local = write_small_pfnano(tmp_path / "small.root")
    fs = xrootd_server.filesystem()
    with open(local, "rb") as source, fs.open("/inputs/small.root", "wb") as target:
        target.write(source.read())

    url = xrootd_server.url_for("/inputs/small.root")
    assert url == f"root://127.0.0.1:{xrootd_server.port}//inputs/small.root"
    with uproot.open(url) as remote, uproot.open(local) as reference:
        for branch in ("event", "FatJet_pt", "PFCands_pt"):
            np.testing.assert_array_equal(
                ak.to_numpy(ak.flatten(remote["Events"][branch].array(), axis=None)),
                ak.to_numpy(ak.flatten(reference["Events"][branch].array(), axis=None)),
            )


def test_url_needs_the_absolute_path_after_the_host(xrootd_server):
    fs = xrootd_server.filesystem()
    with fs.open("/forms/a.bin", "wb") as f:
        f.write(b"abc")

    url = xrootd_server.url_for("forms/a.bin")
    assert url.endswith(f":{xrootd_server.port}//forms/a.bin")
    url_fs, path = fsspec.core.url_to_fs(url)
    assert path == "/forms/a.bin"
    assert url_fs.hostid == xrootd_server.hostid
    with fsspec.open(url, "rb") as f:
        assert f.read() == b"abc"
    # One slash after the host names a relative path, which the server refuses.
    with pytest.raises(OSError, match="relative path"):
        with fsspec.open(f"{xrootd_server.url}forms/a.bin", "rb") as f:
            f.read()


def test_files_from_another_client_show_up_in_listings(xrootd_server):
    reader = xrootd_server.filesystem()
    reader.mkdir("/shared")
    assert reader.ls("/shared", detail=False) == []
    writer = fsspec.filesystem("root", hostid=xrootd_server.hostid, skip_instance_cache=True)
    with writer.open("/shared/late.bin", "wb") as f:
        f.write(b"late")
    assert reader.ls("/shared", detail=False) == ["late.bin"]  # fsspec-xrootd lists base names


def test_local_path_maps_served_paths_and_urls(tmp_path):
    server = XRootDServer(tmp_path / "data")  # not started: the mapping needs no port
    assert server.local_path("/a/b.root") == tmp_path / "data" / "a" / "b.root"
    assert server.local_path("root://127.0.0.1:1094//a/b.root") == tmp_path / "data" / "a" / "b.root"
    with pytest.raises(InvalidInputError, match="leaves the data root"):
        server.local_path("/a/../../etc/passwd")
    with pytest.raises(ServerStartError, match="not started"):
        server.url  # noqa: B018


def test_start_failure_says_why_and_stop_is_idempotent(tmp_path):
    reason = xrootd_unavailable_reason()
    if reason is not None:
        (pytest.fail if require_storage() else pytest.skip)(f"no local XRootD server: {reason}")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        server = XRootDServer(tmp_path / "data", port=taken.getsockname()[1], startup_timeout_s=10)
        with pytest.raises(ServerStartError, match="already in use"):
            server.start()
    assert server.process is None

    server = XRootDServer(tmp_path / "data", startup_timeout_s=10)
    with server:
        pid, port = server.pid, server.port
        assert server.is_running()
    server.stop()
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
