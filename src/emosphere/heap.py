"""The process's heap between batches: freed memory goes back to the system.

A model on the CPU allocates and frees tensors of every size in each batch, and
when batches differ in length (speech regions, the last window of a file) glibc's
heap fragments: its free blocks no longer fit the next batch's tensors, so the
process grows with every new shape. :func:`release_freed_memory`, which the
engine calls after each batch (:meth:`emosphere.engine.Predictor.forward`),
gives the pages of free blocks back. Measured (docs/benchmarks.md, long
recordings): 25 batches of 8 windows of random lengths through a base-size
PyTorch model raised the peak from 1.5 to 3.0 GB, and to 2.1 GB with a trim
after each batch, at the same speed (a batch takes seconds, the trim
milliseconds); onnxruntime keeps its own arena, which a trim leaves alone.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library is not glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


def release_freed_memory() -> None:
    """Give the pages of freed heap blocks back to the system (glibc's ``malloc_trim``; nothing elsewhere)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
