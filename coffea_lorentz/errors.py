"""Exceptions raised by coffea-lorentz.

Every error derives from :class:`CoffeaLorentzError` and also from the builtin that matches it,
so ``except OSError`` or ``except KeyError`` still work for callers that do not know this package.
Messages say what failed, what was expected against what was found, and where (file, branch,
tensor, server URL).
"""

from __future__ import annotations

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
]


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
    """Branches needed to build jet constituents are absent from a file."""

    def __init__(self, path: str, branches: list[str], hint: str = ""):
        self.path = path
        self.branches = list(branches)
        self.hint = hint
        message = f"{path}: missing branches {', '.join(self.branches)}"
        if hint:
            message += f" ({hint})"
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.path, self.branches, self.hint))


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


def one_line(error: BaseException, limit: int = 300) -> str:
    """``error`` as one line ``Type: message`` of at most ``limit`` characters (for tables and records)."""
    name = type(error).__name__
    text = " ".join(str(error).split())
    text = f"{name}: {text}" if text else name
    return text if len(text) <= limit else text[: limit - 1] + "…"
