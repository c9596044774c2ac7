"""scripts/prepare_imagenet.py on a tiny fake ILSVRC2012 in the official archive format.

The devkit is a real tar.gz with data/meta.mat (written with scipy, as torchvision reads it with
scipy) and the val ground truth; the train tar holds one inner tar per class; the val tar holds flat
ILSVRC2012_val_XXXXXXXX.JPEG files. Only the devkit's md5 differs from the real one, so the tests
put the fake's md5 into torchvision's ARCHIVE_META: torchvision's checksum check still runs.
"""
import hashlib
import importlib.util
import io
import os
import tarfile

import numpy as np
import pytest
import scipy.io
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets import imagenet as tv_imagenet

from tests.helpers import ROOT
from utils.running.entry import run_cli
from utils.running.files import TEMP_TAG

SCRIPT = os.path.join("scripts", "prepare_imagenet.py")
_spec = importlib.util.spec_from_file_location("prepare_imagenet", os.path.join(ROOT, SCRIPT))
prepare_imagenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare_imagenet)

WNIDS = ["n01440764", "n01443537", "n01484850"]  # ILSVRC2012_ID 1, 2, 3
TRAIN_COUNTS = {"n01440764": 2, "n01443537": 3, "n01484850": 2}
VAL_LABELS = [2, 1, 3, 3, 1]  # ILSVRC2012_ID of val images 1..5, as in the devkit's ground truth
EXPECT = ["--expect-train", "7", "--expect-val", "5", "--expect-classes", "3", "--no-progress"]
TRAIN_FILES = sorted(f"train/{w}/{w}_{i}.JPEG" for w, n in TRAIN_COUNTS.items() for i in range(n))
VAL_FILES = sorted(f"val/{WNIDS[label - 1]}/ILSVRC2012_val_{i + 1:08d}.JPEG" for i, label in enumerate(VAL_LABELS))


# ------------------------------------------------------------------------------- fake archives

def jpeg_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade % 256, 30, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_meta_mat(path) -> None:
    """meta.mat's 'synsets' struct array with the fields torchvision reads by position: the leaf
    classes (num_children == 0) plus one parent synset that torchvision must drop."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(i + 1, wnid, f"class {i}, synonym {i}", "gloss", 0, np.zeros(0), 0, TRAIN_COUNTS[wnid])
            for i, wnid in enumerate(WNIDS)]
    rows.append((len(WNIDS) + 1, "n00001740", "entity", "gloss", len(WNIDS), np.arange(1, len(WNIDS) + 1), 1, 0))
    synsets = np.zeros(len(rows), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        synsets[i] = row
    scipy.io.savemat(str(path), {"synsets": synsets})


def write_devkit(folder, scratch) -> None:
    data = scratch / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    write_meta_mat(data / "meta.mat")
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{label}\n" for label in VAL_LABELS))
    with tarfile.open(folder / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(scratch / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")


def write_train_tar(folder, omit=()) -> None:
    with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as outer:
        for c, (wnid, n) in enumerate(TRAIN_COUNTS.items()):
            if wnid in omit:
                continue
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for i in range(n):
                    add_bytes(tar, f"{wnid}_{i}.JPEG", jpeg_bytes(40 * c + i))
            add_bytes(outer, f"{wnid}.tar", inner.getvalue())


def write_val_tar(folder) -> None:
    with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as tar:
        for i in range(len(VAL_LABELS), 0, -1):  # stored out of order: labels must follow the number
            add_bytes(tar, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg_bytes(200 + i))


def make_archives(tmp_path, omit_train=()):
    folder = tmp_path / "archives"
    folder.mkdir()
    write_devkit(folder, tmp_path / "devkit-src")
    write_train_tar(folder, omit_train)
    write_val_tar(folder)
    return folder


def accept_fake_devkit(monkeypatch, folder) -> None:
    md5 = hashlib.md5((folder / "ILSVRC2012_devkit_t12.tar.gz").read_bytes()).hexdigest()
    monkeypatch.setitem(tv_imagenet.ARCHIVE_META, "devkit", ("ILSVRC2012_devkit_t12.tar.gz", md5))


@pytest.fixture()
def archives(tmp_path, monkeypatch):
    folder = make_archives(tmp_path)
    accept_fake_devkit(monkeypatch, folder)
    return folder


# ------------------------------------------------------------------------------- helpers

def files_under(root) -> list:
    """Relative paths of the files a training run would see (hidden work files left out)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files if not f.startswith(".")]
    return sorted(found)


def snapshot(root) -> dict:
    """(inode, mtime) of every file, hidden ones included: equal snapshots mean nothing was rewritten."""
    state = {}
    for folder, _, files in os.walk(root):
        for f in files:
            st = os.stat(os.path.join(folder, f))
            state[os.path.join(folder, f)] = (st.st_ino, st.st_mtime_ns)
    return state


def cli(argv):
    """The tool as its command line runs it (`sys.exit(run_cli(main))`): the exit code, errors as one line."""
    return run_cli(prepare_imagenet.main, argv, prog="prepare_imagenet.py")


def build(archives, out, *extra):
    return cli(["--archives", str(archives), "--out", str(out), *EXPECT, *extra])


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prepare_imagenet.py: error: "), lines
    return lines[0]


def assert_val_labels_match_ground_truth(val_dir) -> None:
    dataset = ImageFolder(str(val_dir))
    assert dataset.classes == WNIDS
    for path, target in dataset.samples:
        number = int(os.path.basename(path)[len("ILSVRC2012_val_"):-len(".JPEG")])
        assert target == VAL_LABELS[number - 1] - 1, path


# ------------------------------------------------------------------------------- tests

def test_build_gives_imagefolder_tree_labelled_by_the_devkit(archives, tmp_path, capsys):
    out = tmp_path / "out"
    assert build(archives, out) == 0
    assert files_under(out) == sorted(TRAIN_FILES + VAL_FILES)
    assert ImageFolder(str(out / "train")).classes == WNIDS
    assert_val_labels_match_ground_truth(out / "val")
    # Work files stay outside the split folders, where ImageFolder would take them for classes.
    assert sorted(os.listdir(out)) == [".prepare_imagenet", "train", "val"]
    assert all(not name.startswith(".") for split in ("train", "val") for name in os.listdir(out / split))
    stdout = capsys.readouterr().out
    assert "train: 7 images in 3 classes - OK" in stdout and "val: 5 images in 3 classes - OK" in stdout


def test_split_val_needs_no_train_archive(archives, tmp_path):
    os.remove(archives / "ILSVRC2012_img_train.tar")
    assert build(archives, tmp_path / "out", "--split", "val") == 0
    assert files_under(tmp_path / "out") == VAL_FILES


def test_rerun_is_a_noop(archives, tmp_path):
    out = tmp_path / "out"
    assert build(archives, out) == 0
    before = snapshot(out)
    assert build(archives, out) == 0
    assert snapshot(out) == before


def test_interrupted_run_resumes_without_redoing_finished_files(archives, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    original = prepare_imagenet.copy_member
    calls = []

    def interrupt_on_fourth(*args):
        calls.append(args[2])
        if len(calls) == 4:
            raise KeyboardInterrupt
        original(*args)

    monkeypatch.setattr(prepare_imagenet, "copy_member", interrupt_on_fourth)
    assert build(archives, out) == 130
    assert "re-run" in one_error_line(capsys.readouterr().err)
    assert len(files_under(out)) == 3

    calls.clear()
    monkeypatch.setattr(prepare_imagenet, "copy_member", lambda *args: (calls.append(args[2]), original(*args)))
    assert build(archives, out) == 0
    assert len(calls) == len(TRAIN_FILES) + len(VAL_FILES) - 3  # the 3 finished files were not rewritten
    assert files_under(out) == sorted(TRAIN_FILES + VAL_FILES)


def test_partly_deleted_output_is_rebuilt(archives, tmp_path):
    out = tmp_path / "out"
    assert build(archives, out) == 0
    wnid = WNIDS[1]
    os.remove(out / ".prepare_imagenet" / "train" / f"{wnid}.json")  # class never marked finished
    os.remove(out / "train" / wnid / f"{wnid}_1.JPEG")
    leftover = out / "train" / wnid / f".{wnid}_1.JPEG{TEMP_TAG}x1y2z3"  # the write an interruption cut short
    leftover.write_bytes(b"half a file")
    for path in (out / "train" / WNIDS[2]).iterdir():  # marked finished, but emptied since
        path.unlink()
    os.remove(out / "val" / WNIDS[2] / "ILSVRC2012_val_00000003.JPEG")  # val marker still there
    assert build(archives, out) == 0
    assert files_under(out) == sorted(TRAIN_FILES + VAL_FILES)
    assert not os.path.exists(leftover)


def extract_flat_val(archives, val_dir) -> None:
    val_dir.mkdir(parents=True)
    with tarfile.open(archives / "ILSVRC2012_img_val.tar") as tar:
        tar.extractall(val_dir, filter="data")


def test_fix_flat_val_sorts_in_place_and_resumes(archives, tmp_path):
    data = tmp_path / "data"
    extract_flat_val(archives, data / "val")
    # As if an earlier run moved the first image and was then interrupted.
    (data / "val" / WNIDS[1]).mkdir()
    os.replace(data / "val" / "ILSVRC2012_val_00000001.JPEG", data / "val" / WNIDS[1] / "ILSVRC2012_val_00000001.JPEG")
    args = ["--fix-flat-val", str(data / "val"), "--devkit", str(archives / "ILSVRC2012_devkit_t12.tar.gz"), *EXPECT]
    assert cli(args) == 0
    assert files_under(data) == VAL_FILES
    assert_val_labels_match_ground_truth(data / "val")
    assert os.listdir(data) == ["val"]  # no work files left beside or inside the val folder
    before = snapshot(data)
    assert cli(args) == 0
    assert snapshot(data) == before


def test_fix_flat_val_reports_a_missing_image(archives, tmp_path, capsys):
    val = tmp_path / "val"
    extract_flat_val(archives, val)
    os.remove(val / "ILSVRC2012_val_00000002.JPEG")  # ground truth: class 1
    args = ["--fix-flat-val", str(val), "--devkit", str(archives / "ILSVRC2012_devkit_t12.tar.gz"), *EXPECT]
    assert cli(args) == 1
    captured = capsys.readouterr()
    error = one_error_line(captured.err)
    assert "val has 4 of 5 images (1 missing)" in error and WNIDS[0] in error
    assert f"{WNIDS[0]}: 1 of 2 images (1 missing)" in captured.out


@pytest.mark.parametrize("name", ["ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                                  "ILSVRC2012_devkit_t12.tar.gz"])
def test_missing_archive_is_one_line_and_exit_2(archives, tmp_path, capsys, name):
    os.remove(archives / name)
    assert build(archives, tmp_path / "out") == 2
    error = one_error_line(capsys.readouterr().err)
    assert name in error and "image-net.org" in error and "login" in error
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_missing_archive_from_the_command_line(tmp_path, capsys):
    assert cli(["--archives", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "ILSVRC2012_img_train.tar" in one_error_line(err)


def test_missing_class_fails_the_count_check_and_is_named(tmp_path, monkeypatch, capsys):
    archives = make_archives(tmp_path, omit_train=[WNIDS[2]])
    accept_fake_devkit(monkeypatch, archives)
    assert build(archives, tmp_path / "out") == 1
    captured = capsys.readouterr()
    error = one_error_line(captured.err)
    assert "train has 5 of 7 images (2 missing) in 2 of 3 classes" in error and WNIDS[2] in error
    assert f"{WNIDS[2]}: missing" in captured.out
    assert files_under(tmp_path / "out" / "val") == [f[len("val/"):] for f in VAL_FILES]  # val still built


def test_real_imagenet_counts_are_the_default(archives, tmp_path, capsys):
    assert cli(["--archives", str(archives), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    error = one_error_line(capsys.readouterr().err)
    assert "train has 7 of 1,281,167 images" in error and "val has 5 of 50,000 images" in error
    assert "of 1,000 classes" in error


def test_truncated_archive_is_one_line_and_resumable(archives, tmp_path, capsys):
    val_tar = archives / "ILSVRC2012_img_val.tar"
    intact = val_tar.read_bytes()
    with tarfile.open(val_tar) as tar:
        cut = tar.getmembers()[2].offset_data + 10  # inside the third image
    val_tar.write_bytes(intact[:cut])
    out = tmp_path / "out"
    assert build(archives, out, "--split", "val") == 1
    assert "truncated" in one_error_line(capsys.readouterr().err)
    assert len(files_under(out)) == 2  # the images before the cut, each complete
    val_tar.write_bytes(intact)  # re-downloaded
    assert build(archives, out, "--split", "val") == 0
    assert files_under(out) == VAL_FILES


def test_devkit_with_wrong_checksum_is_refused(tmp_path, capsys):
    archives = make_archives(tmp_path)  # the real md5 stays in torchvision's table
    assert build(archives, tmp_path / "out") == 1
    assert "checksum" in one_error_line(capsys.readouterr().err)


def test_usage_error_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["scripts/prepare_imagenet.py"])  # argparse names the program after it
    with pytest.raises(SystemExit) as exit_info:
        cli(["--out", "somewhere"])
    assert exit_info.value.code == 2
    assert "--archives" in one_error_line(capsys.readouterr().err)
