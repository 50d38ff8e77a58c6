"""Backends: what they do around the model's arithmetic (the arithmetic itself: test_export, test_engine)."""

from __future__ import annotations

import platform

import numpy as np
import pytest
from conftest import tiny_model_config

from emosphere import backends
from emosphere.audio import AudioStats
from emosphere.backends import TorchBackend, int8_saturates
from emosphere.model import EmoSphereSER


def test_the_torch_backend_on_the_cpu_gives_freed_memory_back_after_each_batch(monkeypatch):
    """Batches of other lengths fragment glibc's heap; a trim after each keeps the process from growing."""
    calls = []
    monkeypatch.setattr(backends, "_malloc_trim", lambda: calls.append)
    backend = TorchBackend(EmoSphereSER.build(tiny_model_config(), AudioStats(0.0, 0.1, 1, 1)))
    for length in (4000, 7000):
        avd, _ = backend(np.zeros((2, length), np.float32), np.array([length, length // 2]))
        assert avd.shape == (2, 3)
    assert calls == [0, 0]


def test_glibc_s_trim_is_found_where_the_c_library_is_glibc():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the C library is not glibc: nothing to trim with")
    assert backends._malloc_trim() is not None
    backends.release_freed_memory()


@pytest.mark.parametrize(
    "flags, saturates",
    [
        ("fpu sse4_2 avx avx2 fma", True),  # Haswell .. Zen 3
        ("fpu avx2 avx512f avx512bw", True),  # Skylake-SP: AVX-512 without VNNI
        ("fpu avx2 avx512f avx512bw avx512_vnni", False),  # Cascade Lake, Ice Lake, Zen 4
        ("fpu avx2 avx_vnni", False),  # Alder Lake
        ("fpu sse4_2", False),  # SSE kernels: exact
        ("Features\t: fp asimd asimddp", False),  # ARM
    ],
)
def test_the_cpus_whose_int8_products_saturate_are_told_apart(flags, saturates):
    assert int8_saturates(f"processor\t: 0\nflags\t\t: {flags}\n") is saturates
