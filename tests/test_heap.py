"""The heap between batches: the engine gives freed pages back after every batch, where glibc can."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from emosphere import engine, heap
from emosphere.engine import Item, Options, Predictor, Windowing


class Constant:
    """A backend whose values do not matter: three dimensions at 0.5, no regions."""

    region_names: tuple[str, ...] = ()
    min_samples = 400
    window_seconds = 12.0

    def __call__(self, waveform, lengths):
        return np.full((len(lengths), 3), 0.5, np.float32), None


def test_the_engine_gives_freed_memory_back_after_each_batch(monkeypatch):
    """Batches of other lengths fragment glibc's heap; a trim after each keeps the process from growing."""
    trims = []
    monkeypatch.setattr(engine, "release_freed_memory", lambda: trims.append(1))
    predictor = Predictor(Constant(), Options(batch_size=2))
    items = [Item(i, f"u{i}", np.zeros(n, np.float32), [(0, n)]) for i, n in enumerate((4000, 7000, 9000))]
    batches = list(Windowing(Options(batch_size=2), min_samples=400, crop_seconds=12.0).batches(items))
    for batch in batches:
        predictor.forward(batch)
    assert len(batches) == 2 and len(trims) == 2


def test_glibc_s_trim_is_found_where_the_c_library_is_glibc():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the C library is not glibc: nothing to trim with")
    assert heap._malloc_trim() is not None
    heap.release_freed_memory()
