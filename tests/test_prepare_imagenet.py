"""scripts/prepare_imagenet.py on a tiny fake set of archives in the official format."""
import io
import os
import sys
import tarfile

import numpy as np
import pytest
import scipy.io
from PIL import Image
from torchvision.datasets import imagenet as tv_imagenet

from tests.helpers import ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import prepare_imagenet  # noqa: E402

WNIDS = ["n01440764", "n01443537", "n01484850"]
VAL_LABELS = [2, 1, 3, 3, 1]  # ILSVRC2012_ID (1-based) of val images 1..5
EXPECT = ["--expect-train", "6", "--expect-val", "5", "--expect-classes", "3"]


def jpeg_bytes(seed):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 40 % 256, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture()
def archives(tmp_path, monkeypatch):
    # The fake archives cannot match the real ones' checksums, which torchvision verifies.
    monkeypatch.setattr(tv_imagenet, "_verify_archive", lambda root, file, md5: None)
    folder = tmp_path / "archives"
    devkit_root = tmp_path / "devkit" / "ILSVRC2012_devkit_t12" / "data"
    devkit_root.mkdir(parents=True)
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    synsets = np.array([(i + 1, w, f"class {i}, synonym", "gloss", 0) for i, w in enumerate(WNIDS)]
                       + [(1001, "n00000001", "a parent node", "gloss", 3)], dtype=fields)
    scipy.io.savemat(devkit_root / "meta.mat", {"synsets": synsets})
    (devkit_root / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in VAL_LABELS))
    folder.mkdir()
    with tarfile.open(folder / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "devkit" / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as outer:
        for c, wnid in enumerate(WNIDS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for i in range(2):
                    add_bytes(tar, f"{wnid}_{i}.JPEG", jpeg_bytes(c * 10 + i))
            add_bytes(outer, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as tar:
        for i in range(5, 0, -1):  # stored out of order: labels must follow the file number
            add_bytes(tar, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg_bytes(100 + i))
    return folder


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
                  if not f.startswith(".") and ".prepare" not in d)


EXPECTED_VAL = sorted(f"val/{WNIDS[label - 1]}/ILSVRC2012_val_{i + 1:08d}.JPEG" for i, label in enumerate(VAL_LABELS))
EXPECTED_TRAIN = sorted(f"train/{w}/{w}_{i}.JPEG" for w in WNIDS for i in range(2))


def test_build_tree_with_labels_from_the_devkit(archives, tmp_path):
    out = tmp_path / "out"
    assert prepare_imagenet.main(["--archives", str(archives), "--out", str(out), *EXPECT]) == 0
    assert tree(out) == sorted(EXPECTED_TRAIN + EXPECTED_VAL)


def test_rerun_and_interrupted_run_resume(archives, tmp_path):
    out = tmp_path / "out"
    args = ["--archives", str(archives), "--out", str(out), *EXPECT]
    assert prepare_imagenet.main(args) == 0
    assert prepare_imagenet.main(args) == 0  # a finished tree: nothing to redo
    # An interruption inside a class: its marker was never written and one file is missing.
    os.remove(out / "train" / WNIDS[1] / ".complete")
    os.remove(out / "train" / WNIDS[1] / f"{WNIDS[1]}_1.JPEG")
    os.remove(out / "val" / WNIDS[2] / "ILSVRC2012_val_00000003.JPEG")
    assert prepare_imagenet.main(args) == 0
    assert tree(out) == sorted(EXPECTED_TRAIN + EXPECTED_VAL)


def test_fix_flat_val_in_place(archives, tmp_path):
    val = tmp_path / "data" / "val"
    val.mkdir(parents=True)
    with tarfile.open(archives / "ILSVRC2012_img_val.tar") as tar:
        tar.extractall(val)
    devkit = archives / "ILSVRC2012_devkit_t12.tar.gz"
    assert prepare_imagenet.main(["--fix-flat-val", str(val), "--devkit", str(devkit), *EXPECT]) == 0
    assert tree(tmp_path / "data") == EXPECTED_VAL
    assert prepare_imagenet.main(["--fix-flat-val", str(val), "--devkit", str(devkit), *EXPECT]) == 0


def test_missing_archive_is_exit_2_with_one_line(archives, tmp_path, capsys):
    os.remove(archives / "ILSVRC2012_img_val.tar")
    code = prepare_imagenet.main(["--archives", str(archives), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "ILSVRC2012_img_val.tar is missing" in err and "image-net.org" in err
    assert len(err.splitlines()) == 1


def test_count_mismatch_names_what_is_missing(archives, tmp_path, capsys):
    code = prepare_imagenet.main(["--archives", str(archives), "--out", str(tmp_path / "out")])  # real counts
    err = capsys.readouterr().err.strip()
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("prepare_imagenet.py: error:")]
    assert len(errors) == 1  # the other stderr lines are progress bars
    assert "train: 3 class folders, expected 1000" in errors[0] and "1,281,161 missing" in errors[0]
