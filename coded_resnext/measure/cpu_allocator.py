"""Keep freed tensor memory inside the process on glibc, so CPU inference stops page-faulting.

A CNN's forward pass allocates and frees activations of a few MiB at every layer. glibc's malloc hands
large freed blocks back to the kernel (its mmap threshold, and trimming of the heap top), so every
forward pass page-faults its activations in again: on this project's benchmark about 40% of the CPU
time was kernel time, a fixed cost per activation that shrinks less than the FLOPs do when a binary
classifier is pruned. PyTorch's CPU performance guides fix this by preloading jemalloc or tcmalloc; that
needs ``LD_PRELOAD`` before the process starts and a library this machine does not have, so this sets
glibc's own equivalent knobs with ``mallopt`` at run time. It changes the whole process (memory freed
stays reserved for reuse, up to the peak), so nothing calls it implicitly: ``coded-resnext bench model``
does by default, and deployments of extracted classifiers may.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 1 << 30  # give freed heap memory back only above 1 GiB
TOP_PAD = 256 << 20  # grow the heap in 256 MiB steps


def retain_freed_memory() -> bool:
    """Make glibc keep freed blocks up to 32 MiB for reuse. False (and nothing changed) where the C
    library is not glibc or refuses a setting."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    gnu_version = getattr(libc, "gnu_get_libc_version", None)
    if mallopt is None or gnu_version is None:  # musl has a mallopt that does nothing
        return False
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
