"""Request inputs through Triton *system shared memory*, for a server on the client's own host.

With ``TritonBackend(..., shared_memory=True)`` a request's ``p4`` and ``mask`` are not copied into
the gRPC message: the client writes them into POSIX shared memory (``/dev/shm``) that the server
has mapped, and the request only names the region. :class:`SharedInputs` holds that memory for
one backend in one process:

- one *slot* per request awaiting its final answer, each slot one region for ``p4`` and one for
  ``mask``; a slot is taken when a request is first sent and given back only when its answer has
  arrived, so a request that is retried is resent from the same memory. Slots are made as needed,
  so their number is the most requests a process had unanswered at once (``max_in_flight`` per
  calling thread);
- a region grows (a new, larger one replaces it) when a larger batch comes, to the next power of
  two of bytes; its memory is reserved when it is made (``posix_fallocate``), so a full ``/dev/shm``
  is an error at creation and never a SIGBUS while writing;
- each slot is registered with the server the first time it is used on a client *generation*
  (every reconnection is a new generation: a restarted server has forgotten every registration);
- region names are ``coffea-lorentz-shm-<pid>-<random>-<slot>-<p4|mask>-<serial>``: unique per
  process and backend, and naming the process, so the regions of a process killed with SIGKILL
  can be found and removed (:func:`stale_regions`);
- :meth:`SharedInputs.close` unregisters the regions from the server and removes them; a
  ``weakref.finalize`` does the same when the owner is collected or the interpreter exits.

The regions are made with :mod:`multiprocessing.shared_memory` (what
``tritonclient.utils.shared_memory`` wraps); the server maps them by key (``/<name>``).
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import weakref
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from ..batch import Batch
from ..errors import ServerError

__all__ = ["REGION_PREFIX", "NoRoom", "SharedInputs", "stale_regions"]

#: Every region this package makes starts with this name, followed by the owner's pid.
REGION_PREFIX = "coffea-lorentz-shm-"
#: Where POSIX shared memory objects appear as files on Linux.
SHM_FOLDER = Path("/dev/shm")
#: Smallest region made, in bytes (64 KiB).
_MIN_REGION_BYTES = 1 << 16
#: Deadline in seconds of the server calls made while releasing regions at close or exit.
_RELEASE_TIMEOUT_S = 5.0


class NoRoom(Exception):
    """``/dev/shm`` has no room for a region: the request goes over gRPC instead."""


def stale_regions(alive) -> list[Path]:
    """The ``/dev/shm`` files of regions whose owning process is gone (``alive(pid) -> bool``)."""
    pattern = re.compile(rf"^{re.escape(REGION_PREFIX)}(\d+)-")
    if not SHM_FOLDER.is_dir():
        return []
    found = []
    for path in SHM_FOLDER.glob(f"{REGION_PREFIX}*"):
        match = pattern.match(path.name)
        if match and not alive(int(match.group(1))):
            found.append(path)
    return found


@dataclass(eq=False)
class _Region:
    """One shared memory region: its name (also the Triton region name), the mapping, its size in bytes."""

    name: str
    memory: shared_memory.SharedMemory
    byte_size: int

    @property
    def key(self) -> str:
        """The key the server opens the region by."""
        return f"/{self.name}"


@dataclass(eq=False)
class _Slot:
    """The memory of one request: a region for ``p4`` and one for ``mask`` (None until first used);
    ``generation`` is the client generation the regions are registered on (-1: none)."""

    index: int
    p4: _Region | None = None
    mask: _Region | None = None
    generation: int = -1


def _release(regions: dict[str, _Region], holder: list) -> None:
    """Unregister every region of ``regions`` from the server of ``holder[0]`` (the last client
    they were registered with, if any) and remove them; what fails is skipped. Empties ``regions``."""
    client = holder[0] if holder else None
    for name, region in list(regions.items()):
        if client is not None:
            try:
                client.unregister_system_shared_memory(name, client_timeout=_RELEASE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a server that is gone has forgotten it already
                pass
        _destroy(region)
        regions.pop(name, None)
    holder.clear()


def _destroy(region: _Region) -> None:
    try:
        region.memory.close()
    except BufferError:  # a view is still alive somewhere: unlinking still frees the name
        pass
    try:
        region.memory.unlink()
    except FileNotFoundError:
        pass


class SharedInputs:
    """The shared memory of one :class:`~coffea_lorentz.infer.triton_client.TritonBackend` in one
    process (see the module docstring). Thread-safe: several threads may call the same backend.

    Args:
        where: ``"Triton server URL, model"`` for error messages.
    """

    def __init__(self, where: str):
        self.where = where
        self._token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._free: list[int] = []
        self._serial = 0
        #: name → region of every live region; shared with the finalizer, which must not hold self.
        self._regions: dict[str, _Region] = {}
        #: [the last client regions were registered with], for the finalizer.
        self._client_holder: list = []
        self._finalizer = weakref.finalize(self, _release, self._regions, self._client_holder)

    @property
    def names(self) -> list[str]:
        """Names of the live regions (also their ``/dev/shm`` file names)."""
        with self._lock:
            return sorted(self._regions)

    def take(self) -> int:
        """A free slot for a new request (made when none is free)."""
        with self._lock:
            if self._free:
                return self._free.pop()
            self._slots.append(_Slot(index=len(self._slots)))
            return len(self._slots) - 1

    def give_back(self, slot: int) -> None:
        """Slot ``slot``'s request has its final answer: the slot may carry another request."""
        with self._lock:
            self._free.append(slot)

    def inputs(self, slot: int, batch: Batch, client, generation: int) -> list:
        """``batch`` written into slot ``slot`` and the two ``InferInput`` naming it, for ``client``
        (of client generation ``generation``; the slot is registered with it first if needed).

        Raises :class:`NoRoom` when ``/dev/shm`` has no room for the batch,
        :class:`~coffea_lorentz.errors.ServerError` when the server cannot map the memory (it is not
        on this host), and a gRPC error of the registration (the server went away) as it is.
        """
        import tritonclient.grpc as grpcclient

        p4 = np.ascontiguousarray(batch.p4, dtype=np.float32)
        mask = np.ascontiguousarray(batch.mask, dtype=bool)
        state = self._slots[slot]
        grown = False
        if state.p4 is None or state.p4.byte_size < p4.nbytes:
            state.p4, grown = self._grow(state, state.p4, "p4", p4.nbytes, client), True
        if state.mask is None or state.mask.byte_size < mask.nbytes:
            state.mask, grown = self._grow(state, state.mask, "mask", mask.nbytes, client), True
        if grown or state.generation != generation:
            for region in (state.p4, state.mask):
                self._register(client, region)
            state.generation = generation
        for region, array in ((state.p4, p4), (state.mask, mask)):
            view = np.ndarray(array.shape, dtype=array.dtype, buffer=region.memory.buf)
            view[...] = array
            del view  # no export of the buffer may outlive the write (close() needs none)
        inputs = []
        for name, datatype, region, array in (("p4", "FP32", state.p4, p4), ("mask", "BOOL", state.mask, mask)):
            item = grpcclient.InferInput(name, list(array.shape), datatype)
            item.set_shared_memory(region.name, array.nbytes)
            inputs.append(item)
        return inputs

    def _grow(self, state: _Slot, old: _Region | None, kind: str, needed: int, client) -> _Region:
        """A new region of at least ``needed`` bytes for ``state`` replacing ``old`` (unregistered, removed)."""
        if old is not None:
            try:
                client.unregister_system_shared_memory(old.name, client_timeout=_RELEASE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a server that is gone has forgotten it already
                pass
            with self._lock:
                self._regions.pop(old.name, None)
            setattr(state, kind, None)
            _destroy(old)
        size = max(_MIN_REGION_BYTES, 1 << (int(needed) - 1).bit_length())
        with self._lock:
            self._serial += 1
            name = f"{REGION_PREFIX}{self._token}-{state.index}-{kind}-{self._serial}"
        region = None
        try:
            region = _Region(name=name, memory=shared_memory.SharedMemory(name=name, create=True, size=size),
                             byte_size=size)
            path = SHM_FOLDER / name
            if path.exists():
                descriptor = os.open(path, os.O_RDWR)
                try:
                    os.posix_fallocate(descriptor, 0, size)
                finally:
                    os.close(descriptor)
        except OSError as err:
            if region is not None:
                _destroy(region)
            state.generation = -1
            raise NoRoom(f"{self.where}: no room for {size} bytes of shared memory in {SHM_FOLDER} ({err})") from None
        with self._lock:
            self._regions[name] = region
        state.generation = -1
        return region

    def _register(self, client, region: _Region) -> None:
        """Register ``region`` with ``client``'s server (replacing a registration of the same name)."""
        from .outage import _classify, _one_line, _PERMANENT, _MODEL_FAILED

        try:
            client.unregister_system_shared_memory(region.name)
            client.register_system_shared_memory(region.name, region.key, region.byte_size)
        except Exception as err:
            if _classify(err) not in (_PERMANENT, _MODEL_FAILED):
                raise  # the server went away or is busy: retried like any request
            raise ServerError(f"{self.where}: the server could not map the client's shared memory "
                              f"({_one_line(err)}); shared_memory=True needs the server on this host") from None
        with self._lock:
            self._client_holder[:] = [client]

    def close(self) -> None:
        """Unregister every region from the server and remove it; the object is spent (idempotent)."""
        self._finalizer()
        with self._lock:
            self._slots.clear()
            self._free.clear()
