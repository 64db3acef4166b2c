#!/usr/bin/env bash
# Run a dpt-batch command line on a Ray cluster with Ray's own job CLI (`ray job submit`): what
# `dpt-batch submit` does, from a machine that has only Ray installed.
#
#   RAY_ADDRESS=http://HEAD:8265 jobs/submit.sh run --manifest s3://bucket/archive.parquet \
#       --output s3://bucket/restored
#
# The job runs `python -m pipeline.cli ARGS` on the head node, with the dpt-batch installed on the
# cluster; `run` connects to the job's cluster by itself. Paths in ARGS are the cluster's paths.
#
# Environment:
#   RAY_ADDRESS   the cluster's Ray dashboard (Jobs API) URL, e.g. http://HEAD:8265 (required)
#   WORKING_DIR   upload this source tree with the job and run from it (without .venv, .git, out/,
#                 demo/, bench-results/); default: none, the installed package is used
#   JOB_ENV       names of variables of this shell to pass to the job, e.g. "DPT_CACHE_DIR FSSPEC_S3"
#   WAIT          1 (default): follow the job's logs, exit 1 if it fails; 0: submit and return
#   PYTHON        the Python that builds the runtime environment's JSON (default python3)
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

if [[ $# -eq 0 || $1 == -h || $1 == --help ]]; then
    usage
    [[ $# -gt 0 ]] && exit 0 || exit 2
fi
if [[ -z ${RAY_ADDRESS:-} ]]; then
    echo "submit.sh: set RAY_ADDRESS to the cluster's dashboard URL, e.g. RAY_ADDRESS=http://HEAD:8265" >&2
    exit 2
fi
if [[ -n ${WORKING_DIR:-} && ! -d $WORKING_DIR ]]; then
    echo "submit.sh: WORKING_DIR=$WORKING_DIR is not a folder" >&2
    exit 2
fi

# The runtime environment as JSON: the variables named in JOB_ENV, and the working dir to upload.
runtime_env=$("${PYTHON:-python3}" - <<'PY'
import json
import os
import sys

names = os.environ.get("JOB_ENV", "").split()
missing = [name for name in names if name not in os.environ]
if missing:
    sys.exit(f"submit.sh: JOB_ENV names variables that are not set in this shell: {' '.join(missing)}")
env = {"env_vars": {name: os.environ[name] for name in names}} if names else {}
if os.environ.get("WORKING_DIR"):
    env["working_dir"] = os.path.abspath(os.environ["WORKING_DIR"])
    env["excludes"] = [".venv", ".git", "out/", "demo/", "bench-results/", "__pycache__", ".pytest_cache",
                       ".ruff_cache", "*.egg-info"]
print(json.dumps(env))
PY
)

wait_flag=()
[[ ${WAIT:-1} == 0 ]] && wait_flag=(--no-wait)

exec ray job submit --address "$RAY_ADDRESS" --runtime-env-json "$runtime_env" "${wait_flag[@]}" \
    -- python -m pipeline.cli "$@"
