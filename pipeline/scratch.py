"""Large arrays that a stage fills clip after clip, cut from memory the process already holds.

A faces actor decodes each clip into a stack of full-size pictures (3.1 MB a 1080p frame, 930 MB for a
clip of 300 frames), shrinks a copy for the detector and cuts each track's crops into another stack; the
encode actor decodes its clips batch by batch. Allocated anew for every clip, each of these arrays is
fresh memory that the kernel maps and zeroes page by page as it is first written (malloc hands blocks of
32 MB and more straight back to the kernel, whatever keep_freed_memory sets). On the 2-core machine of
BENCHMARKS.md, a virtual machine that returns freed guest memory to its host, that first write cost more
than the decode itself: 2-10 ms per MB.

`empty(role, shape, dtype)` is np.empty that, in a process where `keep_scratch()` was called (a stage's
actor or task, pipeline.execute.as_worker), hands out a view of a buffer the process kept from an
earlier use of the same role, when one is large enough and nothing holds it any more. Whether something
holds it is read from the buffer's reference count (every view, however derived, references the buffer
that owns the memory), so an array still in use is never handed out twice: its caller gets fresh memory
instead, as np.empty would give. Elsewhere (a user's Python, the tests by default) `empty` is np.empty.

What stays held: per role, at most as many buffers as were ever in use at once, each as large as the
largest request it served, and at most KEPT_BYTES in all; the process's peak, which it needed anyway.
"""
from __future__ import annotations

import sys
import threading
from math import prod

import numpy as np

KEPT_BYTES = 4 << 30  # the most one process keeps for reuse, all roles together
_KEPT: dict[str, list[np.ndarray]] = {}
_LOCK = threading.Lock()
_enabled = False


def keep_scratch(enabled: bool = True) -> None:
    """Let `empty` reuse kept buffers in this process (False: let go of them and allocate anew)."""
    global _enabled
    with _LOCK:
        _enabled = enabled
        if not enabled:
            _KEPT.clear()


def scratch_kept() -> bool:
    """Whether `empty` reuses buffers in this process."""
    return _enabled


def kept_bytes() -> int:
    """Bytes of the buffers kept for reuse, in use or not."""
    with _LOCK:
        return _kept_bytes()


def empty(role: str, shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape` and `dtype`, like np.empty; where scratch is kept,
    a view of a free buffer kept for `role` (each role names one kind of array: "frames", "shrunk",
    "crops")."""
    if not _enabled:
        return np.empty(shape, dtype)
    dtype = np.dtype(dtype)
    nbytes = prod(shape) * dtype.itemsize
    with _LOCK:
        buffers = _KEPT.setdefault(role, [])
        free = [index for index in range(len(buffers)) if _unheld(buffers, index)]
        fits = [index for index in free if buffers[index].nbytes >= nbytes]
        if fits:
            chosen = min(fits, key=lambda index: buffers[index].nbytes)
        else:
            # grow the largest free buffer (too small), or keep one more when all are in use
            chosen = max(free, key=lambda index: buffers[index].nbytes) if free else len(buffers)
            dropped = buffers[chosen].nbytes if free else 0
            if _kept_bytes() - dropped + nbytes > KEPT_BYTES:
                return np.empty(shape, dtype)
            if not free:
                buffers.append(None)
            buffers[chosen] = np.empty(max(nbytes, 1), np.uint8)
        return buffers[chosen][:nbytes].view(dtype).reshape(shape)


def _kept_bytes() -> int:
    return sum(buffer.nbytes for buffers in _KEPT.values() for buffer in buffers)


def _unheld(buffers: list[np.ndarray], index: int) -> bool:
    """Whether nothing but the list references buffers[index] (getrefcount's argument is the other one):
    every numpy view, however derived, references the array that owns its memory."""
    return sys.getrefcount(buffers[index]) <= 2
