"""Fixtures of the Triton serving tests: one real server per module on free ports."""

from __future__ import annotations

import importlib.util

from coffea_lorentz.testing import triton_server_fixture

#: Taggers served in the tests: identity always, lorentznet when its module exists.
SERVED_TAGGERS = ("identity",) + (
    ("lorentznet",) if importlib.util.find_spec("coffea_lorentz.models.lorentznet") is not None else ()
)

triton_server = triton_server_fixture(taggers=SERVED_TAGGERS, scope="module")
