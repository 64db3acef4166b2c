"""Fixtures shared by the whole test suite."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The developers' shared data folder (../shared beside the repository); skips when absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DIR} is absent (footage, weights)")
    return SHARED_DIR
