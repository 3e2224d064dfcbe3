"""Giving a finished step's freed memory back to the operating system.

The in-process runner runs every step of a DAG in one process. A step that held a large
working set (the train step's feature matrix, scikit-learn's copies) frees it when it returns,
but glibc's allocator keeps freed heap pages in its arenas, so the next step starts from the
previous step's peak. ``malloc_trim(0)`` returns those pages; on a C library without it (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import gc
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any:
    try:
        return ctypes.CDLL(None)  # the running process's symbols, libc's among them
    except OSError:
        return None


def release_free_memory() -> bool:
    """Collect garbage, then return free heap pages to the OS; True when glibc trimmed any."""
    gc.collect()
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    return bool(trim(0))
