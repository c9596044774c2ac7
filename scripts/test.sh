#!/usr/bin/env bash
# Quick start, command 2: set up the environment (first run only) and run the test suite.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_env requirements.txt requirements-dev.txt
cd "$ROOT"
exec "$PYTHON" -m pytest -q "$@"
