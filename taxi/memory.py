"""Process-wide memory allocator tuning for processes that load trip months.

Called explicitly by the entrypoints that load data (taxi.pipeline's run_training and
run_inference, the processing flows, the benchmark through those entrypoints): importing
`taxi` changes nothing in the process.
"""

from __future__ import annotations

import ctypes

import pyarrow as pa

# glibc's mallopt parameter number of M_MMAP_THRESHOLD, and glibc's default value for it.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 17  # 128 KiB


def return_freed_memory_to_the_os() -> None:
    """A month is a handful of ~10 MB column arrays that are replaced step after step. By
    default glibc raises its mmap threshold after such frees and keeps later arrays in a heap
    it does not shrink, and Arrow's mimalloc pool keeps what it freed: together ~70 MB of dead
    memory per 1.4M-trip month (measured by benchmarks/benchmark.py). A fixed threshold and
    Arrow's system pool hand freed arrays back at once. Both are process-wide, harmless for
    what else runs in a pipeline worker, and idempotent."""
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
