"""A real browser for the report's tests: Debian's headless Chromium, on a network-less machine.

Where it is absent the set-up installs it (`apt-get install -y chromium`, about 35 s) when it runs as
root with apt; otherwise the tests that need it skip with the reason, and fail under CI (CI=true).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from shared_data import under_ci

# Without the background-networking flags Chromium waits on the closed network and hangs.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=15000")  # fmt: skip
CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_or_skip() -> str:
    """The chromium executable, installed with apt-get when absent and allowed; skips (fails under CI)
    with the reason when there is none."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:  # an empty package list: update it once and try again
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
            done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
        found = find_chromium()
        if found:
            return found
        reason = f"`apt-get install -y chromium` failed: {done.stderr.strip()[-400:]}"
    else:
        reason = "chromium is not installed and this user cannot install it (not root, or no apt-get)"
    if under_ci():
        pytest.fail(f"CI=true, but there is no browser for the report tests: {reason}", pytrace=False)
    pytest.skip(reason)


class Browser:
    """Headless Chromium with its own throw-away profile folder."""

    def __init__(self, executable: str, profile: Path) -> None:
        self.executable, self.profile = executable, profile

    def _run(self, *arguments: str) -> str:
        command = [self.executable, *FLAGS, f"--user-data-dir={self.profile}", *arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
        return done.stdout

    def self_test(self, page: Path, hash_: str = "") -> dict:
        """Open `page` with ?selftest (and `hash_`) and return what its <pre id=selftest> reports."""
        dom = self._run("--dump-dom", f"{page.resolve().as_uri()}?selftest{hash_}")
        found = re.search(r'<pre id="selftest"[^>]*>(.*?)</pre>', dom, re.S)
        assert found, f"{page}: the page wrote no self-test; its DOM ends with {dom[-1500:]}"
        return json.loads(html.unescape(found.group(1)))

    def screenshot(self, page: Path, path: Path, size: tuple[int, int] = (1280, 900)) -> Path:
        """A PNG of the window's first `size` pixels of `page`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        width, height = size
        self._run(f"--screenshot={path}", f"--window-size={width},{height}", page.resolve().as_uri())
        assert path.is_file() and path.stat().st_size > 0, f"chromium wrote no screenshot {path}"
        return path
