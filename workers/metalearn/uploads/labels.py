"""Class names to labels, one rule for CSV rows and image folders alike."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from workers.metalearn.types import DataError


def class_order(names: Iterable[str]) -> list[str]:
    """Class names in label order: numerically when they are all whole numbers
    (``2`` before ``10``), otherwise alphabetically."""
    unique = set(names)
    if all(re.fullmatch(r"-?\d+", n) for n in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def check_class_count(classes: Sequence[str], ways: int, *, field: str = "classes") -> None:
    """A support set must hold exactly the model's ``ways`` classes."""
    if len(classes) != ways:
        shown = ", ".join(c[:20] for c in classes[:8]) + (", ..." if len(classes) > 8 else "")
        raise DataError(
            field,
            f"Found {len(classes)} classes ({shown}); this model tells {ways} classes apart, "
            f"so give examples of exactly {ways} classes, at least 1 each",
        )


def label_indices(names: Sequence[str], classes: Sequence[str], where: Sequence[str]) -> list[int]:
    """Each example's label: the index of its class name among ``classes`` (the
    support set's); ``where[i]`` names example ``i`` in an error."""
    index = {name: i for i, name in enumerate(classes)}
    labels = []
    for name, place in zip(names, where, strict=True):
        if name not in index:
            raise DataError(place, f"class '{name[:40]}' is not one of the support set's classes")
        labels.append(index[name])
    return labels
