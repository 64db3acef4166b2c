"""Which device a setting means, and which precision a network runs in on which kind of device.

A run decides these once on the driver for each actor pool (pipeline.context), from the cluster's
resources; a Restorer used on its own decides them once from this machine (pipeline.restorer); the
engine only applies what it is given (model.engine). Deciding a precision needs no torch."""
from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def device_for(setting: str | None) -> str:
    """The device a setting (model.device) means here: `auto` is CUDA when a GPU is visible, else the
    CPU; `cuda` without a visible GPU is refused."""
    import torch

    if setting in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(setting).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("model.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return str(setting)


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
