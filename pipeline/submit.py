"""`dpt-batch submit`: a dpt-batch command line run as a job on a Ray cluster, through Ray's Jobs API.

    dpt-batch submit --address http://HEAD:8265 --wait -- run --manifest s3://b/archive.parquet --output s3://b/out

The job's driver runs `python -m pipeline.cli ARGS` on the head node, with the dpt-batch installed
there (or, with a working dir, the source tree uploaded with the job), and `run` connects to the job's
own cluster (Ray sets RAY_ADDRESS for the driver). Paths in ARGS are the cluster's paths.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Never uploaded with --working-dir: the environment, history, outputs and demo films are local.
UPLOAD_EXCLUDES = (
    ".venv", ".git", "out/", "demo/", "bench-results/", "__pycache__", ".pytest_cache", ".ruff_cache",
    "*.egg-info",
)  # fmt: skip
FINISHED = ("SUCCEEDED", "FAILED", "STOPPED")


class SubmitError(Exception):
    """The job was not submitted: the cluster cannot be reached or refused it. Nothing was started."""


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: its status, the exit status for `submit --wait`, and Ray's message."""

    job_id: str
    status: str
    exit_code: int
    message: str

    def summary(self) -> str:
        """One line: "job ID succeeded", or "job ID failed (exit status N)" with Ray's reason when it
        is not just the command's failure (whose output is in the logs above)."""
        if self.exit_code == 0:
            return f"job {self.job_id} {self.status.lower()}"
        reason = self.message.splitlines()[0].split(", last available logs")[0] if self.message else ""
        if reason.startswith("Job entrypoint command failed with exit code"):
            reason = ""
        return f"job {self.job_id} {self.status.lower()} (exit status {self.exit_code})" + (
            f": {reason}" if reason else ""
        )


def entrypoint(args: Sequence[str]) -> str:
    """The job's shell command: this dpt-batch command line, run by the cluster's Python."""
    return shlex.join(["python", "-m", "pipeline.cli", *args])


def job_env_vars(names: Iterable[str], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """--env NAME (the value of NAME in this shell) or NAME=VALUE, as the job's environment variables."""
    env_vars = {}
    for name in names:
        name, equals, value = name.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SubmitError(f"--env {name}{equals}{value}: not an environment variable name")
        if not equals:
            if name not in environ:
                raise SubmitError(f"--env {name}: {name} is not set in this shell; set it or give NAME=VALUE")
            value = environ[name]
        env_vars[name] = value
    return env_vars


def runtime_env(working_dir: Path | None = None, env_vars: Mapping[str, str] | None = None) -> dict:
    """The job's runtime environment: the source tree to upload (without UPLOAD_EXCLUDES), if any, and
    environment variables. Empty: the job uses the dpt-batch installed on the cluster."""
    environment: dict = {}
    if working_dir is not None:
        if not Path(working_dir).is_dir():
            raise SubmitError(f"--working-dir {working_dir}: no such folder")
        environment["working_dir"] = str(Path(working_dir).resolve())
        environment["excludes"] = list(UPLOAD_EXCLUDES)
    if env_vars:
        environment["env_vars"] = dict(env_vars)
    return environment


def connect(address: str):
    """A Jobs API client for the cluster whose dashboard is at `address` (http://HEAD:8265)."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError as error:
        raise SubmitError(
            f"the Ray cluster at {address} asks for its authentication token: export RAY_AUTH_MODE=token "
            f"and the cluster's token as RAY_AUTH_TOKEN (or in ~/.ray/auth_token), then submit again "
            f"({str(error).splitlines()[0]})"
        ) from None
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise SubmitError(
            f"cannot reach Ray's Jobs API at {address} ({str(error).rstrip('.')}). Give --address the "
            "head node's dashboard URL, http://HEAD:8265 (start the head with `ray start --head "
            "--dashboard-host 0.0.0.0`; Ray's dashboard needs ray[default] there)"
        ) from None


def submit(
    address: str,
    args: Sequence[str],
    working_dir: Path | None = None,
    env_vars: Mapping[str, str] | None = None,
) -> tuple[object, str]:
    """Submit `args` (a dpt-batch command line without `dpt-batch`) to the cluster at `address`;
    (client, job id)."""
    client = connect(address)
    try:
        environment = runtime_env(working_dir, env_vars)
        job_id = client.submit_job(entrypoint=entrypoint(args), runtime_env=environment)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise SubmitError(f"the Ray cluster at {address} refused the job: {error}") from None
    return client, job_id


def follow(client, job_id: str, write: Callable[[str], None], poll_s: float = 1.0) -> JobOutcome:
    """Write the job's logs as they come (`write` gets chunks of text) until it ends; its outcome."""
    written = 0

    async def tail() -> None:
        nonlocal written
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)
            written += len(chunk)

    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # "WebSocket closed"
    try:
        asyncio.run(tail())
    except Exception:  # noqa: BLE001 - no websocket to the dashboard: poll the logs instead
        pass
    while True:
        status = str(client.get_job_status(job_id).value)
        logs = client.get_job_logs(job_id)
        if len(logs) > written:
            write(logs[written:])
            written = len(logs)
        if status in FINISHED:
            break
        time.sleep(poll_s)
    return outcome(client.get_job_info(job_id), job_id)


def outcome(info, job_id: str) -> JobOutcome:
    """A finished job's outcome from its JobDetails: exit status 0 when it succeeded, else the exit
    status of its command when Ray recorded it (driver_exit_code, or "exit code N" in its message),
    else 1. A command killed by a signal N gives 128 + N, as in a shell."""
    status = str(getattr(info.status, "value", info.status))
    message = (info.message or "").strip()
    if status == "SUCCEEDED":
        return JobOutcome(job_id, status, 0, message)
    code = getattr(info, "driver_exit_code", None)
    if not code:
        found = re.search(r"exit code (-?\d+)", message)
        code = int(found.group(1)) if found else None
    if code and code < 0:
        code = 128 - code
    return JobOutcome(job_id, status, code or 1, message)
