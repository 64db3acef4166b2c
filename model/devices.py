"""Which precision a network runs in on which kind of device; no torch needed to decide it.

The run decides this once on the driver for each actor pool (pipeline.context), and the engine
decides it the same way for a device it was given (model.engine)."""
from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def effective_precision(precision: str, device_type: str) -> str:
    """The precision `precision` means on a device of `device_type` ("cpu" or "cuda"): `auto` is fp32
    on the CPU and bf16 on a GPU; fp16 needs a GPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"model.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "fp32" if device_type == "cpu" else "bf16"
    if precision == "fp16" and device_type == "cpu":
        raise ValueError("model.precision fp16 needs a GPU; use fp32 (or bf16) on the CPU")
    return precision
