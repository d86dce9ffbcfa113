"""Optional dependencies of :mod:`coffea_lorentz.generate`, loaded through one function."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import GeneratorUnavailableError

__all__ = ["GeneratorUnavailableError", "require", "available"]

#: Import name → pip requirement that provides it.
_PROVIDERS: dict[str, str] = {
    "pythia8mc": "pythia8mc==8.317.2",
    "fastjet": "fastjet==3.5.2.0",
}


def require(name: str) -> ModuleType:
    """Import the optional module ``name`` or raise :class:`GeneratorUnavailableError` with the pip command."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        requirement = _PROVIDERS.get(name, name)
        raise GeneratorUnavailableError(
            f"coffea_lorentz.generate needs the Python module {name!r}, which cannot be imported ({err}); "
            f"install it with: pip install '{requirement}' (or pip install 'coffea-lorentz[generate]')"
        ) from err


def available() -> bool:
    """True when both Pythia 8 and FastJet can be imported."""
    try:
        require("pythia8mc")
        require("fastjet")
    except GeneratorUnavailableError:
        return False
    return True
