"""utils/files.py: the one atomic-write helper and the output-location checks."""
import json
import os
import stat

import pytest
import torch

from utils.errors import UserError
from utils.running.files import (TEMP_TAG, OutputWriteError, atomic_write, check_output_dir, check_output_file, copy_file,
                         remove_stale_temps, write_json)


def test_replaces_the_file_only_when_complete(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with atomic_write(path) as f:
        f.write(b"new")
        assert path.read_bytes() == b"old"  # not yet: the content goes to a temporary file
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a.bin"]


@pytest.mark.parametrize("error", [RuntimeError("PytorchStreamWriter failed writing file"), OSError(28, "No space"),
                                   ValueError("odd")])
def test_any_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    """torch.save reports a full disk as RuntimeError: whatever the writer raises is a write failure."""
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 1}, path)
    before = path.read_bytes()
    with pytest.raises(OutputWriteError) as info:
        with atomic_write(path) as f:
            f.write(b"partial")
            raise error
    assert str(path) in str(info.value) and "unchanged" in str(info.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["checkpoint.pth.tar"]


def test_interrupt_is_not_turned_into_a_write_error(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "x") as f:
            f.write(b"1")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_mode_follows_the_umask_like_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "via_helper") as f:
            f.write(b"x")
        with open(tmp_path / "via_open", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    mode = lambda name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)  # noqa: E731
    assert mode("via_helper") == mode("via_open") == 0o666 & ~umask


def test_missing_parent_folders_are_created(tmp_path):
    with atomic_write(tmp_path / "a" / "b" / "c.txt", "w") as f:
        f.write("hi")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "hi"


def test_json_is_strict_and_copy_is_atomic(tmp_path):
    write_json(tmp_path / "r.json", {"loss": float("nan"), "top1": 1.5, "rows": [float("inf"), 2]})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "top1": 1.5, "rows": [None, 2]}
    copy_file(tmp_path / "r.json", tmp_path / "copy.json")
    assert (tmp_path / "copy.json").read_text() == text


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    for name in (f".checkpoint.pth.tar{TEMP_TAG}abc", f".metrics.csv{TEMP_TAG}x", "checkpoint.pth.tar", ".hidden",
                 f"name{TEMP_TAG}but_not_hidden"):
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted([f".checkpoint.pth.tar{TEMP_TAG}abc", f".metrics.csv{TEMP_TAG}x"])
    assert sorted(os.listdir(tmp_path)) == sorted(["checkpoint.pth.tar", ".hidden", f"name{TEMP_TAG}but_not_hidden"])


def test_output_checks_create_nothing_and_name_the_problem(tmp_path):
    check_output_dir(str(tmp_path / "new" / "run"), "--output-dir")
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_dir(str(tmp_path / "file"), "--output-dir")
    with pytest.raises(UserError, match="below .*file, not a folder"):
        check_output_dir(str(tmp_path / "file" / "run"), "--output-dir")
    with pytest.raises(UserError, match="is a folder"):
        check_output_file(str(tmp_path), "--predictions")


def test_unwritable_location_is_a_user_error(tmp_path, monkeypatch):
    """The error a read-only file system gives (EROFS), injected at the probe write."""
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(UserError, match="Read-only file system"):
        check_output_dir(str(tmp_path / "run"), "--output-dir")


def test_append_adds_whole_lines_and_repairs_a_half_written_one(tmp_path):
    from utils.running.files import append_text

    path = tmp_path / "rows.csv"
    append_text(str(path), "a,b\n")
    append_text(str(path), "1,2\n")
    assert path.read_text() == "a,b\n1,2\n"
    with open(path, "ab") as f:
        f.write(b"3,")  # what a crash in the middle of a write leaves
    append_text(str(path), "3,4\n")
    assert path.read_text() == "a,b\n1,2\n3,4\n"
    path.write_bytes(b"half a first line")
    append_text(str(path), "x\n")
    assert path.read_text() == "x\n"


def test_append_failure_names_the_file_and_keeps_the_rows(tmp_path, monkeypatch):
    from utils.running import files
    from utils.running.files import append_text

    path = tmp_path / "rows.csv"
    append_text(str(path), "a\n")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OutputWriteError) as info:
        append_text(str(path), "b\n")
    assert str(info.value).startswith(f"cannot write {path} (No space left on device); the rows written before are "
                                      "intact")
    monkeypatch.undo()
    assert path.read_text().startswith("a\n")
