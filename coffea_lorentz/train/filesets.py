"""Tagger training on NanoAOD: the signal and background datasets of a coffea fileset → the three
splits of labelled jets (:class:`~coffea_lorentz.train.jets.JetSet`) and what the training folder
records about them.

The jets are read by :func:`coffea_lorentz.fileset_jets.read_fileset_jets` (the run's reader,
the selection, the split by event number); signal jets get label 1, background jets 0. The
constituents are used as read — already the ``max_constituents`` leading-pT ones, in the run's
order — so a model trained on them sees in ``run --tagger FOLDER`` exactly what it saw here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..fileset_jets import (
    SPLIT_NAMES,
    FilesetJets,
    JetSelection,
    SplitFractions,
    read_fileset_jets,
    select_datasets,
    training_domain,
)
from .jets import JetSet

__all__ = ["fileset_splits"]


def _labelled(parts: Sequence[tuple[FilesetJets, int]], split: str) -> JetSet:
    """One split of the classes, labelled, padded to the widest jet."""
    samples = [(part.part(split), label) for part, label in parts]
    width = max(sample.p4.shape[1] for sample, _ in samples)
    names = set.intersection(*(set(sample.observables) for sample, _ in samples))
    return JetSet(
        p4=np.concatenate([np.pad(s.p4, ((0, 0), (0, width - s.p4.shape[1]), (0, 0))) for s, _ in samples]),
        mask=np.concatenate([np.pad(s.mask, ((0, 0), (0, width - s.mask.shape[1]))) for s, _ in samples]),
        label=np.concatenate([np.full(len(s), label, dtype=np.int64) for s, label in samples]),
        observables={name: np.concatenate([np.asarray(s.observables[name]) for s, _ in samples]) for name in names},
    )


def fileset_splits(
    fileset: Mapping[str, dict],
    *,
    signal: Sequence[str],
    background: Sequence[str],
    max_constituents: int,
    collection: str = "FatJet",
    selection: JetSelection = JetSelection(),
    fractions: SplitFractions = SplitFractions(),
    max_jets: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, JetSet], dict[str, Any]]:
    """(``"train"``/``"val"``/``"test"`` → :class:`JetSet`, the record for ``metrics.json``) of the
    ``signal`` (label 1) and ``background`` (label 0) datasets of ``fileset``.

    ``max_jets`` caps the jets read per class. The record holds the training ``domain``
    (:func:`~coffea_lorentz.fileset_jets.training_domain`), the ``split`` (fractions, rule, jets
    per class and split) and the ``collection``.
    """
    signal_set = select_datasets(fileset, signal, "--signal")
    background_set = select_datasets(fileset, background, "--background")
    overlap = sorted(set(signal_set) & set(background_set))
    if overlap:
        raise InvalidInputError(f"--signal and --background both name {', '.join(overlap)}: a dataset is one class")
    read = dict(collection=collection, max_constituents=max_constituents, selection=selection, fractions=fractions,
                max_jets=max_jets, progress=progress)
    classes = {"signal": read_fileset_jets(signal_set, what="signal jets", **read),
               "background": read_fileset_jets(background_set, what="background jets", **read)}
    parts = [(classes["signal"], 1), (classes["background"], 0)]
    splits = {name: _labelled(parts, name) for name in SPLIT_NAMES}
    for name in SPLIT_NAMES:
        if len(splits[name]) == 0:
            raise InvalidInputError(f"the {name} split holds no jets: read more events or raise its fraction")
    domain = training_domain(classes, collection=collection, max_constituents=max_constituents, selection=selection)
    record = {
        "domain": domain.as_record(),
        "split": fractions.as_record() | {name: part.counts() for name, part in classes.items()},
        "collection": collection,
        "classes": {"signal": list(signal), "background": list(background)},
    }
    return splits, record
