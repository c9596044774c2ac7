"""Draw one or several runs' curves from their metrics.csv: train/val loss, train/val top-1 and the learning
rate against epoch, runs side by side in one PNG.

    python scripts/plot_run.py runs/eca_resnet50 --png curves.png
    python scripts/plot_run.py runs/eca_resnet50 runs/resnet50 --labels ECA,plain --png compare.png

Needs matplotlib (pip install -r requirements-plot.txt).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.analysis.plots import plot_runs, read_metrics  # noqa: E402
from utils.config.parser import OneLineParser  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.running.entry import run_cli  # noqa: E402
from utils.running.files import check_output_file  # noqa: E402


def main(argv=None) -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or their metrics.csv files)")
    p.add_argument("--png", required=True, help="the picture to write")
    p.add_argument("--labels", default=None, help="comma-separated names for the runs (default: folder names)")
    args = p.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [os.path.basename(os.path.normpath(r)) for r in args.runs]
    if len(labels) != len(args.runs):
        raise UserError(f"--labels names {len(labels)} runs but {len(args.runs)} were given: one name per run")
    check_output_file(args.png, "--png")
    for run in args.runs:
        read_metrics(run)  # every run readable before drawing anything
    plot_runs(args.runs, labels, args.png)
    print(f"=> wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
