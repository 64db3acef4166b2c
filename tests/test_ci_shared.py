"""Under CI a missing ../shared fails the test run naming it; outside CI its tests skip with the reason."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pytest_without_shared(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name != "CI"}
    env["DPT_SHARED_DIR"] = str(tmp_path / "no-shared")
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_scenes.py"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_under_ci_a_missing_shared_folder_fails_the_run_and_names_it(tmp_path):
    done = pytest_without_shared(tmp_path, "true")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert str(tmp_path / "no-shared") in output and "absent" in output
    assert " passed" not in output  # stopped before any test


def test_outside_ci_its_tests_skip_with_the_reason(tmp_path):
    done = pytest_without_shared(tmp_path, None)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "skipped" in output and " failed" not in output
