#!/usr/bin/env bash
# Quick start, command 2: set up the environment (first run only) and run the test suite.
# The tests run in ECA_TEST_WORKERS processes (pytest-xdist; default 2, one per core of a small CI machine);
# ECA_TEST_WORKERS=0 runs them in this process, and `-n N` on the command line overrides it.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_env requirements.txt requirements-dev.txt
cd "$ROOT"
exec "$PYTHON" -m pytest -q -n "${ECA_TEST_WORKERS:-2}" "$@"
