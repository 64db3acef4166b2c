"""../shared, where the tests read footage, weights and the parity fixture, and what its absence means.

Outside CI a test whose shared data is absent skips with the reason; under CI (CI=true) it fails, and
a missing folder stops the whole run at its start, so that CI never goes green without the data.
DPT_SHARED_DIR points the tests at another copy of the folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

SHARED_DIR = Path(os.environ.get("DPT_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def absence_message() -> str:
    return (f"the shared data folder {SHARED_DIR} is absent (footage, weights, parity fixture); "
            "CI=true needs it beside the repository as ../shared (or DPT_SHARED_DIR)")  # fmt: skip


def shared_missing(what: str) -> NoReturn:
    """Skip the calling test for want of shared data (`what` says which); fail it under CI."""
    if under_ci():
        pytest.fail(f"CI=true, but {what} (looked in {SHARED_DIR})", pytrace=False)
    pytest.skip(what)
