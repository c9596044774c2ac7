"""Output that cannot be shown never stops the work (utils/running/entry.py), with real processes: a training run
whose stdout is closed (`>&-`) still writes its files, and its checkpoint does not land on descriptor 1; a tool
whose reader goes away (`| head -c 0`) ends as it would have, without a traceback."""
import os
import subprocess
import sys

import torch

from tests.helpers import ROOT, TINY, make_image_folder


def test_training_with_stdout_closed(tmp_path):
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "-a", "resnet18", "--epochs", "1",
                             "--output-dir", str(out), *TINY, data], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=300,
                            preexec_fn=lambda: os.close(1))  # what `python main.py ... >&-` starts with
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    state = torch.load(out / "checkpoint.pth.tar", weights_only=True)  # whole: no printed line went into it
    assert state["epoch"] == 1 and (out / "metrics.csv").read_text().startswith("epoch,")


def test_a_reader_that_goes_away(tmp_path):
    """`paras_flops.py ... | head -c 0`: the pipe breaks at the first line; the tool still ends with exit 0."""
    script = (f"{sys.executable} {os.path.join(ROOT, 'paras_flops.py')} -a resnet18 --input-size 32 "
              "| head -c 0; echo \"exit ${PIPESTATUS[0]}\" >&2")
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.stderr.strip().splitlines()[-1] == "exit 0", result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
