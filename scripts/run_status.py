"""How the last training run in a run folder ended, for requeue scripts and for people.

    python scripts/run_status.py runs/eca_resnet50        # prints one line (RUN/status.json works too)

Exit code: 0 finished, 10 stopped by a signal with a resumable checkpoint (requeue it: the same command
with --resume auto continues), 11 cancelled (scancel: resumable, but the user ended it: do not requeue;
submit it again to continue), 3 running (or killed before it could record how it ended: the line says
so when its pid is gone from this host), 1 failed (requeueing would fail again: read the message),
2 no run there.

    python scripts/run_status.py RUN --mark cancelled --message "job 123 cancelled by scancel"

records a state decided outside the run (scripts/slurm/train.sbatch does, for a cancelled job and for a
run that failed before writing its status), keeping the previous state and message in the new message.
"""
import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.errors import UserError  # noqa: E402  (these imports load no torch: a requeue script waits on them)
from utils.running.entry import run_cli  # noqa: E402
from utils.running.files import write_json  # noqa: E402
from utils.running.run_folder import STATUS_NAME  # noqa: E402  (the name the run writes)

EXIT = {"finished": 0, "stopped": 10, "cancelled": 11, "running": 3, "failed": 1}


def read_status(run_dir: str):
    try:
        with open(os.path.join(run_dir, STATUS_NAME)) as f:
            status = json.load(f)
        if not isinstance(status, dict) or not isinstance(status.get("state"), str):
            return None
        return status
    except (OSError, ValueError):
        return None


def write_status(run_dir: str, status: dict) -> None:
    write_json(os.path.join(run_dir, STATUS_NAME), status)  # atomic, as the run writes it


def mark(run_dir: str, state: str, message: str) -> None:
    previous = read_status(run_dir)
    if previous:
        message = f"{message} (before: {previous['state']}: {previous.get('message', '')})"
    write_status(run_dir, {"state": state, "message": message, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def gone(status: dict) -> bool:
    """A "running" status whose process, on this host, no longer exists: the run was killed."""
    if status.get("host") != socket.gethostname() or not isinstance(status.get("pid"), int):
        return False
    try:
        os.kill(status["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


def run_folder(path: str) -> str:
    """RUN or RUN/status.json: both name the run."""
    if os.path.basename(os.path.normpath(path)) == STATUS_NAME:
        return os.path.dirname(os.path.normpath(path)) or "."
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN", help="a run folder (--output-dir), or its status.json")
    p.add_argument("--mark", choices=("cancelled", "failed"), help="record this state in RUN/status.json")
    p.add_argument("--message", default="", help="the reason, with --mark")
    args = p.parse_args(argv)
    run_dir = run_folder(args.run_dir)
    if args.mark:
        if not os.path.isdir(run_dir):
            raise UserError(f"--mark {args.mark}: {run_dir} is not a folder; give the run's --output-dir")
        mark(run_dir, args.mark, args.message)
    status = read_status(run_dir)
    if status is None:
        path = os.path.join(run_dir, STATUS_NAME)
        print(f"{run_dir}: no finished, stopped or failed run recorded ({path} missing or unreadable)")
        return 2
    state = status["state"]
    killed = " (that process no longer runs: killed)" if state == "running" and gone(status) else ""
    print(f"{run_dir}: {state} at {status.get('time', '?')}: {status.get('message', '')}{killed}")
    return EXIT.get(state, 1)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="run_status.py"))
