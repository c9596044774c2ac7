"""How the last training run in a run folder ended, for requeue scripts and for people.

    python scripts/run_status.py runs/eca_resnet50        # prints one line

Exit code: 0 finished, 10 stopped by a signal with a resumable checkpoint (requeue it: the same command
with --resume auto continues), 1 failed (requeueing would fail again: read the message), 2 no run there.
"""
import argparse
import json
import os
import sys

EXIT = {"finished": 0, "stopped": 10, "failed": 1}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    args = p.parse_args(argv)
    path = os.path.join(args.run_dir, "status.json")
    try:
        with open(path) as f:
            status = json.load(f)
        state = status["state"]
    except (OSError, ValueError, KeyError, TypeError):
        print(f"{args.run_dir}: no finished, stopped or failed run recorded ({path} missing or unreadable)")
        return 2
    print(f"{args.run_dir}: {state} at {status.get('time', '?')}: {status.get('message', '')}")
    return EXIT.get(state, 1)


if __name__ == "__main__":
    sys.exit(main())
