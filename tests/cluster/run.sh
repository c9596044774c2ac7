#!/usr/bin/env bash
# CI: start a one-node SLURM here, run tests/cluster against it, stop it (always). Exit code: pytest's;
# 77 when the cluster cannot be had (not root, no apt-get or packages; tests/cluster/slurm.sh says why),
# or 0 instead with ECA_SLURM_OPTIONAL=1. Extra arguments go to pytest (e.g. -k requeue).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
start=$(date +%s)
bash tests/cluster/slurm.sh up
up=$?
if [ "$up" = 77 ]; then
    [ "${ECA_SLURM_OPTIONAL:-0}" = 1 ] && exit 0
    exit 77
fi
trap 'bash tests/cluster/slurm.sh down' EXIT
[ "$up" = 0 ] || exit "$up"
ready=$(date +%s)
# shellcheck source=/dev/null
source "${ECA_SLURM_DIR:-/tmp/eca-slurm}/slurm.env"
# a private --basetemp: other pytest runs on this machine prune /tmp/pytest-of-$USER while jobs still write there
"$PYTHON" -m pytest -q -p no:cacheprovider --basetemp="${ECA_SLURM_DIR:-/tmp/eca-slurm}/pytest" tests/cluster "$@"
rc=$?
echo "tests/cluster: cluster up in $((ready - start)) s, tests in $(($(date +%s) - ready)) s, pytest exit $rc"
exit "$rc"
