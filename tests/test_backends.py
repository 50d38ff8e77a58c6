"""Backends: where int8 ONNX files are less exact (the arithmetic itself: test_export, test_engine)."""

from __future__ import annotations

import pytest

from emosphere.backends import int8_saturates


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
