"""torch.compile builds one graph per run: training batches keep their size (an unreadable image is replaced,
not dropped), validation runs the uncompiled module, and a compiled evaluation pads its last batch."""
import os

import pytest
import torch
from torch._dynamo.utils import counters

import main
from models import create_model
from tests.helpers import TINY, make_image_folder
from tests.data.test_gpu import HEADER_ONLY_JPEG
from utils.running.runner import run


@pytest.fixture()
def graphs():
    """The number of graphs torch.compile built during the test."""
    torch._dynamo.reset()
    counters.clear()
    yield lambda: counters["stats"]["unique_graphs"]
    torch._dynamo.reset()


# The loader's workers find the first file unreadable (replaced there); the second passes the gpu pipeline's
# header check and fails only in the device decoder (refilled there, see utils/data/gpu.py Stage).
UNREADABLE = {"pil": b"\xff\xd8\xff\xe0 not really a JPEG", "gpu": HEADER_ONLY_JPEG}


@pytest.mark.parametrize("backend", ["pil", "gpu"])
def test_training_with_an_unreadable_image_compiles_once(tmp_path, graphs, capsys, backend):
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=3)  # val: 9 = 8 + a partial batch
    with open(os.path.join(data, "train", "class1", "img2.jpg"), "wb") as f:
        f.write(UNREADABLE[backend])
    code = run(["-a", "resnet18", "--epochs", "2", "--compile", "--compile-backend", "aot_eager", "-b", "4",
                "--data-backend", backend, "--output-dir", str(tmp_path / "run"), *TINY[2:], data],
               main.RECIPE, main.BUILTIN, "")
    out = capsys.readouterr().out
    assert code == 0 and "skipped 1 unreadable images" in out  # still counted, though replaced
    assert graphs() == 1


def test_compiled_evaluation_pads_its_last_batch(tmp_path, graphs, capsys):
    data = make_image_folder(tmp_path / "data", val_per_class=3, splits=("val",))  # 9 images, batches of 4
    weights = tmp_path / "w.pth.tar"
    torch.save({"state_dict": create_model("resnet18", num_classes=3).state_dict()}, weights)
    common = ["-e", "--resume", str(weights), "-b", "4", *TINY[2:], data]
    assert run([*common, "--output-dir", str(tmp_path / "eager")], main.RECIPE, main.BUILTIN, "") == 0
    eager = capsys.readouterr().out
    assert run([*common, "--compile", "--compile-backend", "aot_eager", "--output-dir", str(tmp_path / "compiled")],
               main.RECIPE, main.BUILTIN, "") == 0
    compiled = capsys.readouterr().out
    assert graphs() == 1
    line = [l for l in eager.splitlines() if l.startswith(" * Prec@1")]
    assert line and line == [l for l in compiled.splitlines() if l.startswith(" * Prec@1")]
    assert "=> 9 images" in compiled
