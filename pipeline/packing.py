"""Named numpy arrays as one bytes object, for what rides in a clip's record between stages (face crops,
their flows, the pictures' frames), and back without copying them.

    magic (8 bytes) | header length (8 bytes, little-endian) | header (JSON) | arrays, each 64-byte aligned

The header lists each array's name, dtype, shape and offset. Packing copies each array once (into the
bytes object); unpacking gives read-only views into the bytes. This replaced `np.savez` (a zip
archive): that copied each array three times and ran a CRC-32 over it, and `np.load` copied it
again and checked the CRC: about 1-2 core-ms per 512x512 crop each way, paid in the faces, restore
and encode stages (BENCHMARKS.md, "Re-measured 2026-12-03"). The bytes never leave a run (Ray's
object store carries them, and spills them as they are), so the format has no other reader.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

MAGIC = b"DPTARR1\n"
_ALIGN = 64
_LENGTH = 8  # bytes of the header's length


def pack_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """name -> array (any numeric dtype; non-contiguous arrays are made contiguous) as one bytes object;
    b"" for no arrays."""
    if not arrays:
        return b""
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    entries, offset = [], 0
    for name, array in contiguous.items():
        if array.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects ({array.dtype}): only plain data packs")
        entries.append([name, array.dtype.str, list(array.shape), offset])
        offset += -(-array.nbytes // _ALIGN) * _ALIGN
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-(len(MAGIC) + _LENGTH + len(header)) % _ALIGN)  # data starts aligned
    parts = [MAGIC, len(header).to_bytes(_LENGTH, "little"), header]
    for array in contiguous.values():
        parts.append(memoryview(array.reshape(-1)).cast("B"))
        parts.append(b"\0" * (-array.nbytes % _ALIGN))
    return b"".join(parts)


def unpack_arrays(data: bytes) -> dict[str, np.ndarray]:
    """What `pack_arrays` packed: name -> read-only array viewing `data` (copy one to change it).

    Raises:
        ValueError: `data` is not what pack_arrays makes (truncated, or another format).
    """
    if not data:
        return {}
    start = len(MAGIC) + _LENGTH
    if len(data) < start or bytes(data[: len(MAGIC)]) != MAGIC:
        raise ValueError(f"not packed arrays ({len(data)} bytes, starting {bytes(data[:8])!r})")
    length = int.from_bytes(data[len(MAGIC) : start], "little")
    try:
        entries = json.loads(bytes(data[start : start + length]))
        base, arrays = start + length, {}
        for name, dtype, shape, offset in entries:
            dtype = np.dtype(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            if base + offset + count * dtype.itemsize > len(data):
                raise ValueError(f"array {name!r} runs past the end: the data is truncated")
            arrays[name] = np.frombuffer(data, dtype, count, base + offset).reshape(shape)
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"packed arrays with an unreadable header ({len(data)} bytes): {error}") from None
    return arrays
