"""Memory the master gives back to the system once a job ends.

glibc serves an allocation above ``M_MMAP_THRESHOLD`` (128 KiB at start) with its own
``mmap``, returned to the system by ``free``. But each such free raises the threshold to the
freed size (glibc's dynamic threshold, up to 32 MiB on 64-bit): after one 10M-task job freed
its 10 MB per-task arrays, the next jobs' arrays came from the ``brk`` heap instead, where any
small live object above them keeps the pages resident. Measured with the broker in one
process: 10M, 3x1M, then 10M tasks left 42.9 MiB resident against 22.2 MiB at the start;
with the threshold pinned, 24.0 MiB. Pinning it (``mallopt``) turns the dynamic rule off.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("distproc.master")

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
DEFAULT_THRESHOLD = 128 * 1024


def pin_mmap_threshold(size: int = DEFAULT_THRESHOLD) -> bool:
    """Make every allocation above ``size`` an mmap of its own, for good. False where the C
    library has no ``mallopt`` or refuses (not glibc): memory is then still correct, only
    slower to come back."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = bool(mallopt(M_MMAP_THRESHOLD, size))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused: freed job memory may stay resident")
    return ok
