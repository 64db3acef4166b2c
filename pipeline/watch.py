"""Saying so when a live run stops making progress, and what it waits for.

Ray's own no-progress timeout is off (one clip of the official network on a CPU can take longer than
it allows), so the run watches itself: when no clip has come in for a while, a line says for how
long, which stages have clips in hand (this run's attempt markers, pipeline.stages.count_attempt),
which actors Ray could not start, and what the cluster has free.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

STALL_AFTER_S = 300.0


class StallWatch:
    """From a thread, report a stall once `after_s` seconds pass without `progress()`, and again every
    `after_s` seconds while it lasts. Use as a context manager around the run's loop."""

    def __init__(self, describe: Callable[[float], str], report: Callable[[str], None],
                 after_s: float = STALL_AFTER_S, every_s: float = 10.0) -> None:  # fmt: skip
        self.describe, self.report, self.after_s, self.every_s = describe, report, after_s, every_s
        self.last = self.reported = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dpt-stall-watch", daemon=True)

    def progress(self) -> None:
        self.last = self.reported = time.monotonic()

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            now = time.monotonic()
            if now - self.last >= self.after_s and now - self.reported >= self.after_s:
                self.reported = now
                try:
                    self.report(self.describe(now - self.last))
                except Exception as error:  # a report that fails must never take the run with it
                    self.report(f"no clip has come in for {now - self.last:.0f} s ({error})")


def describe_stall(idle_s: float, work_root: str | Path, run_id: str) -> str:
    """What a run that has had no clip for `idle_s` seconds waits for, in one line."""
    parts = [f"no clip has come in for {idle_s / 60:.1f} min"]
    started = started_per_stage(work_root, run_id)
    if started:
        counts = ", ".join(f"{stage} {count}" for stage, count in started.items())
        parts.append(f"clips started per stage: {counts}")
    parts.extend(ray_waits())
    return "; ".join(parts)


def started_per_stage(work_root: str | Path, run_id: str) -> dict[str, int]:
    """stage -> clips (or videos, for probe) that a worker of this run has started, from the attempt
    markers in the work folder (this node's)."""
    prefix = f".attempts-{run_id}-"
    counts: Counter[str] = Counter()
    for marker in Path(work_root).glob(f"*/{prefix}*"):
        counts[marker.name.removeprefix(prefix).split("-", 1)[0]] += 1
    return {stage: counts[stage] for stage in ("probe", "faces", "restore", "encode") if counts[stage]}


def ray_waits() -> list[str]:
    """The actors Ray has not been able to start, and the resources the cluster has free."""
    import ray
    from ray._private import state  # the GCS actor table: the public state API needs the dashboard

    pending = Counter(actor.get("ActorClassName") or "actor" for actor in state.actors().values()
                      if actor.get("State") in ("PENDING_CREATION", "DEPENDENCIES_UNREADY"))  # fmt: skip
    waits = []
    if pending:
        listed = ", ".join(f"{count} x {name}" for name, count in pending.most_common())
        waits.append(f"actors waiting to start (for resources the cluster lacks?): {listed}")
    total, free = ray.cluster_resources(), ray.available_resources()
    shown = [name for name in ("CPU", "GPU") if total.get(name)]
    waits.append("free: " + ", ".join(f"{free.get(name, 0):g} of {total[name]:g} {name}" for name in shown))
    return waits
