"""A real two-node Ray cluster on this machine: a head with the dashboard (Jobs API) and a second node,
each started by `ray start` in a session of its own. The second node may run in a mount namespace of
its own (`unshare -m`) with a private tmpfs over a folder (its scratch): a node that shares no disk
with the head there, as on a cloud cluster that shares only object storage.

Teardown kills exactly this cluster's processes, by session: the members of the two `ray start`
sessions and their descendants (Ray starts each job's driver in a session of its own). `ray stop`
would kill every Ray on the machine, among them an embedded Ray of the test process itself.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from run_support import process_table

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dashboard_unavailable() -> str:
    """Why a Ray dashboard (and with it the Jobs API) cannot start here; empty when it can."""
    try:
        import ray.job_submission  # noqa: F401
        from ray._private.utils import get_dashboard_dependency_error
    except ImportError as error:
        return f"Ray's Jobs API is not importable: {error}"
    error = get_dashboard_dependency_error()
    return f"Ray's dashboard cannot start (install ray[default]): {error}" if error else ""


def cluster_env() -> dict[str, str]:
    """The environment of the cluster's processes and of the commands that talk to it: the venv's
    `python` and `ray` first on PATH (a job's entrypoint runs `python`), no inherited Ray address, and
    no token authentication (a loopback-only test cluster; an embedded Ray of this process may have
    switched it on in os.environ)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_AUTH_MODE"] = "disabled"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def unshare_unavailable() -> str:
    """Why a process cannot get a mount namespace with a private tmpfs here; empty when it can."""
    if not shutil.which("unshare"):
        return "`unshare` (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", folder],
            capture_output=True, text=True,
        )  # fmt: skip
    return f"no private mount namespace here (unshare -m: {done.stderr.strip()})" if done.returncode else ""


@dataclass
class LocalCluster:
    """Two Ray nodes on 127.0.0.1 with `cpus` CPUs each; the second has the resource `worker_node`.

    With `private` set, the worker node runs in a mount namespace of its own in which a fresh tmpfs
    covers that folder: nothing it writes there is visible to the head or to this process."""

    cwd: Path
    cpus: int = 2
    object_store_bytes: int = 256 * 1024**2
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dpt-ray-", dir="/tmp")))
    sessions: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=cluster_env)
    private: Path | None = None

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, timeout: float = 120) -> None:
        self._ray_start(
            "--head", "--port", str(self.gcs_port), "--temp-dir", str(self.temp_dir),
            "--include-dashboard=true", "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(self.dashboard_port),
        )  # fmt: skip
        self.start_worker(timeout=timeout)

    def start_worker(self, env: dict[str, str] | None = None, timeout: float = 120) -> None:
        """Start the worker node (with extra `env` for its processes), and wait until it is alive."""
        before = set(self.alive_nodes())
        self.worker_session = self._ray_start(
            "--address", f"127.0.0.1:{self.gcs_port}", "--resources", '{"worker_node": 1}',
            env=env, private=self.private,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not (set(alive := self.alive_nodes()) - before) or len(alive) < 2:
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster has {len(alive)} live nodes after {timeout} s: {alive}")
            time.sleep(0.5)

    def kill_worker(self, timeout: float = 30) -> None:
        """kill -9 every process of the worker node, as when its machine is lost; wait until the head
        sees it dead."""
        survivors = self.end({self.worker_session}, grace=0, timeout=timeout)
        assert not survivors, f"processes of the killed worker node survived: {survivors}"
        lost = time.monotonic()
        while len(self.alive_nodes()) > 1 and time.monotonic() < lost + 60:
            time.sleep(0.5)
        print(f"the head saw the worker node dead after {time.monotonic() - lost:.1f} s")

    def worker_node_id(self) -> str:
        return next(node for node, resources in self.alive_nodes().items() if "worker_node" in resources)

    def _ray_start(self, *args: str, env: dict[str, str] | None = None, private: Path | None = None) -> int:
        command = [str(VENV_BIN / "ray"), "start", *args, "--num-cpus", str(self.cpus),
                   "--object-store-memory", str(self.object_store_bytes),
                   "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats"]  # fmt: skip
        if private is not None:  # ray start, and every process it leaves behind, see a fresh tmpfs there
            private.mkdir(parents=True, exist_ok=True)
            mount = 'mount -t tmpfs -o size=2g dpt-scratch "$0" && exec "$@"'
            command = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, str(private), *command]
        process = subprocess.Popen(
            command, cwd=self.cwd, env={**self.env, **(env or {})}, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.sessions.append(process.pid)
        output, _ = process.communicate(timeout=180)
        if process.returncode != 0:
            raise AssertionError(f"`{' '.join(command)}` failed ({process.returncode}):\n{output[-4000:]}")
        return process.pid

    def alive_nodes(self) -> dict[str, dict]:
        """node id -> total resources of each live node, from the state API on the dashboard."""
        from ray.util.state import list_nodes

        try:
            nodes = list_nodes(address=self.dashboard_url, timeout=10)
        except Exception:  # noqa: BLE001 - the dashboard is still starting
            return {}
        return {node.node_id: node.resources_total for node in nodes if node.state == "ALIVE"}

    def stage_actor_nodes(self, submission_id: str) -> set[str]:
        """The nodes ("head", "worker") where the Ray Data actors of a submitted job ran."""
        from ray.job_submission import JobSubmissionClient
        from ray.util.state import list_actors

        job_id = JobSubmissionClient(self.dashboard_url).get_job_info(submission_id).job_id
        nodes = {node: "worker" if "worker_node" in resources else "head"
                 for node, resources in self.alive_nodes().items()}  # fmt: skip
        actors = list_actors(address=self.dashboard_url, filters=[("job_id", "=", job_id)], detail=True,
                             limit=1000, raise_on_missing_output=False)  # fmt: skip
        return {nodes.get(actor.node_id, actor.node_id) for actor in actors
                if actor.class_name.startswith("MapWorker")}  # fmt: skip

    def processes(self, sessions: set[int]) -> list[int]:
        """Live members of `sessions` and all their descendants (adds the descendants' sessions)."""
        table = process_table()
        found = {pid for pid, (_, session) in table.items() if session in sessions}
        while children := {pid for pid, (parent, _) in table.items() if parent in found} - found:
            found |= children
        sessions |= {table[pid][1] for pid in found}
        return sorted(found - {os.getpid()})

    def stop(self, grace: float = 5, timeout: float = 30) -> list[int]:
        """SIGTERM the cluster's processes, SIGKILL what is left after `grace` seconds, remove its temp
        folder; the pids that survived `timeout` seconds (none, normally)."""
        survivors = self.end(set(self.sessions), grace, timeout)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return survivors

    def end(self, sessions: set[int], grace: float, timeout: float) -> list[int]:
        """SIGTERM the processes of `sessions` (and their descendants), SIGKILL what is left after
        `grace` seconds (at once with 0); the pids that survived `timeout` seconds."""
        deadline = time.monotonic() + timeout
        signalled_at, sig = time.monotonic(), signal.SIGTERM if grace > 0 else signal.SIGKILL
        while (pids := self.processes(sessions)) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
            if time.monotonic() - signalled_at > grace:
                sig = signal.SIGKILL
        return self.processes(sessions)
