# Sourced by the Quick start scripts: create .venv once and install the requirements into it.
# Idempotent: a stamp holding the requirements' checksum skips pip when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ECA_VENV:-$ROOT/.venv}"
ensure_env() {
    local reqs=("$@") stamp sum
    if [ ! -x "$VENV/bin/python" ]; then
        echo "Creating virtual environment in $VENV" >&2
        python3 -m venv "$VENV"
    fi
    sum=$(cat "${reqs[@]/#/$ROOT/}" | sha256sum | cut -c1-16)
    stamp="$VENV/.eca-requirements-$sum"
    if [ ! -f "$stamp" ]; then
        echo "Installing ${reqs[*]} into $VENV (first run only)" >&2
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${reqs[@]/#/-r$ROOT/}"
        touch "$stamp"
    fi
    PYTHON="$VENV/bin/python"
}
