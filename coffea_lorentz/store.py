"""Storage: one output destination, local or remote, behind fsspec.

A run's output is a folder addressed by a local path or an fsspec URL (``root://host//path`` through
``fsspec-xrootd``, ``s3://bucket/path``, ``file:///path``). :class:`OutputStore` is what every part
of a run uses to reach it — the workers that write chunk files and the client that verifies them
and writes ``manifest.json`` — so nothing assumes that the client and the workers share a disk.

Writes are atomic at the destination: a file is written under a temporary name in the same folder
(``.<name>.<random>.tmp``) and renamed into place where the store can rename (local disks,
XRootD); where it cannot (object stores), a single put of the whole file is the atomic step. A
reader therefore sees either no file or the whole file. Temporary files that a killed writer left
behind are removed by :meth:`OutputStore.remove_temporary_files`, which a run calls while it holds
the output's lock.

>>> store = OutputStore("out")                                     # doctest: +SKIP
>>> store.put_file("/tmp/chunk.root", "ttbar/nano_0-100.root")      # doctest: +SKIP
>>> store.exists("ttbar/nano_0-100.root")                           # doctest: +SKIP
True
"""

from __future__ import annotations

import posixpath
import uuid
from pathlib import Path

from .errors import OutputError

__all__ = ["OutputStore", "TEMPORARY_SUFFIX", "unwritable"]

#: Suffix of files being written; never a finished file.
TEMPORARY_SUFFIX = ".tmp"
#: Protocols whose rename is a cheap, atomic server-side move.
_RENAMING_PROTOCOLS = ("file", "local", "root", "memory")
_COPY_BLOCK_BYTES = 8 * 1024 * 1024


def unwritable(url: str, error: OSError) -> str:
    """One line on why ``url`` cannot be written, with what to do."""
    import errno

    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "read-only file system" if error.errno == errno.EROFS else "permission denied"
        return f"output {url} cannot be written ({why}): choose a writable output folder"
    if error.errno == errno.ENOSPC:
        return f"output {url}: no space left on the device: free some space (or choose another output) and rerun"
    return f"output {url}: cannot write: {' '.join(str(error).split())}"


class OutputStore:
    """A folder at ``url`` (local path or fsspec URL), reached through fsspec.

    The store pickles as its URL: each Dask worker opens its own filesystem object on first use.

    Args:
        url: ``/local/path``, ``file:///path``, ``root://HOST:PORT//abs/path``, ``s3://bucket/prefix``, …
        storage_options: keyword options for the fsspec filesystem (credentials, endpoints).
    """

    def __init__(self, url: str | Path, **storage_options):
        self.url = str(url).rstrip("/") or "/"
        self.storage_options = dict(storage_options)
        self._fs = None
        self._root: str | None = None

    # -- identity ---------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        return {"url": self.url, "storage_options": self.storage_options, "_fs": None, "_root": None}

    def __repr__(self) -> str:
        return f"OutputStore({self.url!r})"

    @property
    def is_local(self) -> bool:
        """Whether the store is a folder of this machine's file system."""
        return "://" not in self.url or self.url.startswith("file://")

    @property
    def fs(self):
        """The fsspec filesystem, opened on first use in this process."""
        if self._fs is None:
            self._open()
        return self._fs

    @property
    def root(self) -> str:
        """The store's folder as a path of :attr:`fs`."""
        if self._root is None:
            self._open()
        return self._root  # type: ignore[return-value]

    def _open(self) -> None:
        import fsspec

        if "://" not in self.url:
            url = str(Path(self.url).expanduser().resolve())
        else:
            url = self.url
        options = dict(self.storage_options)
        if url.startswith("root://"):
            # fsspec-xrootd caches listings forever; other processes write here too.
            options.setdefault("use_listings_cache", False)
        try:
            fs, root = fsspec.core.url_to_fs(url, **options)
        except (ImportError, ValueError) as err:
            protocol = url.split("://", 1)[0] if "://" in url else "file"
            hint = " (pip install fsspec-xrootd xrootd)" if protocol == "root" else ""
            raise OutputError(f"output {self.url}: no storage for protocol {protocol!r}{hint}: {err}") from None
        self._fs, self._root = fs, root.rstrip("/") or "/"

    @property
    def protocol(self) -> str:
        protocol = self.fs.protocol
        return protocol[0] if isinstance(protocol, (tuple, list)) else str(protocol)

    def path(self, relative: str) -> str:
        """The filesystem path of ``relative`` inside the store."""
        return posixpath.join(self.root, relative) if relative else self.root

    def url_of(self, relative: str) -> str:
        """A URL (or local path) of ``relative`` that uproot and fsspec open from any machine."""
        return f"{self.url}/{relative}" if relative else self.url

    # -- reading ----------------------------------------------------------------------------
    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self.path(relative)))

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open(self.path(relative), "rb") as file:
            return file.read()

    def read_text(self, relative: str) -> str:
        return self.read_bytes(relative).decode()

    def size(self, relative: str) -> int:
        return int(self.fs.size(self.path(relative)))

    def list_files(self, relative: str = "") -> list[str]:
        """Every file below ``relative``, as paths relative to the store, sorted."""
        base = self.path(relative)
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base)
        prefix = self.root.rstrip("/") + "/"
        return sorted(path[len(prefix):] if path.startswith(prefix) else path.lstrip("/") for path in found)

    # -- writing ----------------------------------------------------------------------------
    def makedirs(self, relative: str = "") -> None:
        path = self.path(relative)
        try:
            self.fs.makedirs(path, exist_ok=True)
        except FileExistsError:
            pass
        except OSError as err:
            raise OutputError(unwritable(self.url_of(relative), err)) from None
        if self.is_local and not self.fs.isdir(path):
            raise OutputError(f"output {self.url_of(relative)} is a file, not a folder: give a folder (it is created "
                              "if missing)")

    def _temporary_name(self, relative: str) -> str:
        folder, name = posixpath.split(relative)
        return posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:12]}{TEMPORARY_SUFFIX}")

    def put_file(self, local_path: str | Path, relative: str) -> str:
        """Copy the local file ``local_path`` to ``relative`` atomically; returns ``relative``."""
        with open(local_path, "rb") as source:
            self._write(relative, source)
        return relative

    def write_bytes(self, relative: str, data: bytes) -> str:
        """Write ``data`` to ``relative`` atomically; returns ``relative``."""
        import io

        self._write(relative, io.BytesIO(data))
        return relative

    def write_text(self, relative: str, text: str) -> str:
        return self.write_bytes(relative, text.encode())

    def _write(self, relative: str, source) -> None:
        folder = posixpath.dirname(relative)
        self.makedirs(folder)
        renames = self.protocol in _RENAMING_PROTOCOLS
        target = self._temporary_name(relative) if renames else relative
        try:
            with self.fs.open(self.path(target), "wb") as sink:
                while block := source.read(_COPY_BLOCK_BYTES):
                    sink.write(block)
            if renames:
                if self.protocol in ("file", "local"):
                    import os

                    os.replace(self.path(target), self.path(relative))
                else:
                    if self.fs.exists(self.path(relative)):
                        self.fs.rm(self.path(relative))
                    self.fs.mv(self.path(target), self.path(relative))
        except BaseException as err:
            if renames:
                try:
                    self.fs.rm(self.path(target))
                except (OSError, FileNotFoundError):
                    pass
            if isinstance(err, OSError) and not isinstance(err, OutputError):
                raise OutputError(unwritable(self.url_of(relative), err)) from None
            raise

    def move(self, relative: str, new_relative: str) -> str:
        """Move the file ``relative`` to ``new_relative`` inside the store (replacing one there); returns
        ``new_relative``. A rename where the store renames, else a copy and a remove."""
        self.makedirs(posixpath.dirname(new_relative))
        source, target = self.path(relative), self.path(new_relative)
        try:
            if self.protocol in ("file", "local"):
                import os

                os.replace(source, target)
            else:
                if self.fs.exists(target):
                    self.fs.rm(target)
                self.fs.mv(source, target)
        except OSError as err:
            raise OutputError(f"output {self.url_of(relative)}: cannot move to {new_relative}: {err}") from None
        return new_relative

    def remove(self, relative: str) -> None:
        """Remove one file; a missing file is not an error."""
        path = self.path(relative)
        try:
            self.fs.rm(path)
        except FileNotFoundError:
            pass
        except OSError:
            if self.fs.exists(path):  # XRootD reports a missing file as a plain OSError
                raise

    def remove_temporary_files(self) -> list[str]:
        """Remove every ``*.tmp`` file a killed writer left; returns what was removed."""
        removed = [name for name in self.list_files() if posixpath.basename(name).startswith(".")
                   and name.endswith(TEMPORARY_SUFFIX)]
        for name in removed:
            self.remove(name)
        return removed
