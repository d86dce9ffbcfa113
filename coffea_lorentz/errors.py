"""Exceptions raised by coffea-lorentz.

Every error derives from :class:`CoffeaLorentzError` and also from the builtin that matches it,
so ``except OSError`` or ``except KeyError`` still work for callers that do not know this package.
Messages say what failed, what was expected against what was found, and where (file, branch,
tensor, server URL).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CoffeaLorentzError",
    "InputFileError",
    "MissingBranchError",
    "InvalidInputError",
    "ModelMismatchError",
    "ServerError",
    "ServerStartError",
    "InferenceError",
    "ConfigurationError",
    "OutputError",
    "SymmetryError",
    "GeneratorUnavailableError",
    "closest_names",
]

#: How many close existing names an error lists per missing one, and how close they must be
#: (:func:`difflib.get_close_matches` ratio).
_CLOSEST_COUNT = 3
_CLOSEST_CUTOFF = 0.6


def closest_names(name: str, available: Iterable[str], *, count: int = _CLOSEST_COUNT) -> list[str]:
    """Up to ``count`` names of ``available`` closest to ``name``, best first (difflib ratio ≥ 0.6).

    >>> closest_names("PFCands_pt", ["PFCand_pt", "PFCands_eta", "Jet_pt"])
    ['PFCand_pt', 'PFCands_eta']
    """
    return difflib.get_close_matches(name, list(available), n=count, cutoff=_CLOSEST_CUTOFF)


class CoffeaLorentzError(Exception):
    """Base class of every error raised by coffea-lorentz."""


class InputFileError(CoffeaLorentzError, OSError):
    """An input file is missing, unreadable, or not a NanoAOD file."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class MissingBranchError(CoffeaLorentzError, KeyError):
    """Branches needed to build jet constituents are absent from a file.

    Args:
        path: the file.
        branches: the missing branch names.
        hint: what the branches are needed for.
        available: the branch names the file does have; when given, the message lists the closest
            existing ones for each missing branch (``closest``: missing name → up to three names).
    """

    def __init__(self, path: str, branches: list[str], hint: str = "", available: Iterable[str] | None = None):
        self.path = path
        self.branches = list(branches)
        self.hint = hint
        names = sorted(set(available)) if available is not None else []
        self.closest: dict[str, list[str]] = {
            branch: matches for branch in self.branches if (matches := closest_names(branch, names))
        }
        message = f"{path}: missing branches {', '.join(self.branches)}"
        if hint:
            message += f" ({hint})"
        if self.closest:
            close = "; ".join(f"{branch}: {', '.join(matches)}" for branch, matches in self.closest.items())
            message += f"; closest existing branches: {close}"
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        # the closest names alone reproduce ``closest``: the best matches of a set are also
        # the best of any subset that holds them
        kept = sorted({name for matches in self.closest.values() for name in matches})
        return (type(self), (self.path, self.branches, self.hint, kept if self.closest else None))


class InvalidInputError(CoffeaLorentzError, ValueError):
    """Input values are out of range or inconsistent (names the branch or tensor and the value)."""


class ModelMismatchError(CoffeaLorentzError, ValueError):
    """A served model's inputs or outputs differ from what the client sends or expects."""


class ServerError(CoffeaLorentzError, ConnectionError):
    """The inference server could not be reached or kept failing after the retries."""


class ServerStartError(ServerError):
    """A local Triton server did not start or did not become ready in time."""


class InferenceError(CoffeaLorentzError, RuntimeError):
    """A model raised while computing scores."""


class ConfigurationError(CoffeaLorentzError, ValueError):
    """A run cannot start as configured (unknown tagger, unreachable or mismatched server, batch size
    above the served model's ``max_batch_size``, an output holding a different run, …).

    Found before any chunk is processed; retrying cannot fix it.
    """


class OutputError(CoffeaLorentzError, OSError):
    """The output destination cannot be written, is locked by another run, or holds files that do not verify."""


class SymmetryError(CoffeaLorentzError, AssertionError):
    """A tagger's output changed under a transformation it should be invariant under
    (raised by the checks of :mod:`coffea_lorentz.symmetry`)."""


class GeneratorUnavailableError(CoffeaLorentzError, ImportError):
    """An optional Monte Carlo dependency (Pythia 8 or FastJet) cannot be imported."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """``error`` as one line ``Type: message`` of at most ``limit`` characters (for tables and records)."""
    name = type(error).__name__
    text = " ".join(str(error).split())
    text = f"{name}: {text}" if text else name
    return text if len(text) <= limit else text[: limit - 1] + "…"
