"""utils/running/run_folder.py: a training run's folder is its own (empty, or holding the run it resumes), is
held by one live run at a time, and is cleaned of what a killed run left."""
import os

import pytest

from utils.errors import UserError
from utils.running.files import TEMP_TAG
from utils.running.run_folder import (LOCK_NAME, RunFolder, check_run_folder, existing_run_file, trained_epochs,
                                      trained_run_file)


def metrics(folder, epochs):
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{e},0.1,1.0\n" for e in epochs)
    (folder / "metrics.csv").write_text("epoch,lr,train_loss\n" + rows)


def test_an_empty_or_missing_folder_takes_any_run(tmp_path):
    check_run_folder(str(tmp_path / "new"), "", None, auto=False)
    (tmp_path / "empty").mkdir()
    check_run_folder(str(tmp_path / "empty"), "", None, auto=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a run file")
    check_run_folder(str(tmp_path / "other"), "", None, auto=True)


@pytest.mark.parametrize("name", ["checkpoint.pth.tar", "model_best.pth.tar", "metrics.csv", "args.json",
                                  "status.json"])
def test_a_fresh_start_refuses_a_folder_holding_a_run(tmp_path, name):
    (tmp_path / name).write_text("x")
    with pytest.raises(UserError) as info:
        check_run_folder(str(tmp_path), "", None, auto=False)
    assert str(info.value) == (f"{tmp_path} already holds a run ({name}): continue it with --resume auto, or give "
                               "this run its own --output-dir")


def test_which_files_mark_a_run_and_which_a_trained_one(tmp_path):
    assert existing_run_file(str(tmp_path)) is None and trained_run_file(str(tmp_path)) is None
    (tmp_path / "args.json").write_text("{}")
    assert existing_run_file(str(tmp_path)) == "args.json" and trained_run_file(str(tmp_path)) is None
    (tmp_path / "metrics.csv").write_text("epoch\n0\n")
    assert existing_run_file(str(tmp_path)) == "metrics.csv" == trained_run_file(str(tmp_path))


def test_trained_epochs_are_read_from_metrics_csv(tmp_path):
    assert trained_epochs(str(tmp_path)) == 0
    metrics(tmp_path, [0, 1, 2])
    assert trained_epochs(str(tmp_path)) == 3
    (tmp_path / "metrics.csv").write_text("epoch,lr\n0,0.1\nnot-a-number,0.1\n4,0.1\n")
    assert trained_epochs(str(tmp_path)) == 5  # the last epoch logged, rows that are no count left out
    (tmp_path / "metrics.csv").write_text("lr\n0.1\n")  # no epoch column
    assert trained_epochs(str(tmp_path)) == 0


def test_resuming_the_folders_own_checkpoint_is_fine(tmp_path):
    metrics(tmp_path, [0, 1])
    (tmp_path / "checkpoint.pth.tar").write_bytes(b"x")
    check_run_folder(str(tmp_path), str(tmp_path / "checkpoint.pth.tar"), 2, auto=False)
    check_run_folder(str(tmp_path), str(tmp_path / "checkpoint.pth.tar"), 2, auto=True)


def test_resuming_an_older_checkpoint_into_a_folder_that_trained_further_is_refused(tmp_path):
    """model_best.pth.tar of epoch 1 into a folder with 3 epochs: it would overwrite the later checkpoint and repeat
    rows of metrics.csv."""
    metrics(tmp_path, [0, 1, 2])
    best = tmp_path / "model_best.pth.tar"
    best.write_bytes(b"x")
    with pytest.raises(UserError) as info:
        check_run_folder(str(tmp_path), str(best), 2, auto=False)
    message = str(info.value)
    assert message.startswith(f"{tmp_path} has trained 3 epochs but {best} continues from epoch 2: ")
    assert f"resume from {tmp_path / 'checkpoint.pth.tar'}" in message and "--output-dir" in message
    check_run_folder(str(tmp_path), str(best), 3, auto=False)  # the latest epoch: nothing would be repeated


def test_a_checkpoint_from_elsewhere_needs_its_own_folder(tmp_path):
    run = tmp_path / "run"
    metrics(run, [0])
    other = tmp_path / "elsewhere" / "checkpoint.pth.tar"
    with pytest.raises(UserError, match="already holds a run"):
        check_run_folder(str(run), str(other), 1, auto=False)


def test_resume_auto_in_a_folder_killed_before_its_first_checkpoint_starts_again(tmp_path):
    (tmp_path / "args.json").write_text("{}")
    (tmp_path / "status.json").write_text('{"state": "running"}')
    check_run_folder(str(tmp_path), "", None, auto=True)
    with pytest.raises(UserError, match="already holds a run"):  # without auto: the user must say what to do
        check_run_folder(str(tmp_path), "", None, auto=False)


@pytest.mark.parametrize("trained", ["model_best.pth.tar", "metrics.csv"])
def test_resume_auto_never_starts_over_a_run_that_trained(tmp_path, trained):
    (tmp_path / trained).write_text("epoch\n0\n")
    with pytest.raises(UserError) as info:
        check_run_folder(str(tmp_path), "", None, auto=True)
    assert str(info.value).startswith(f"--resume auto: {tmp_path} has no checkpoint.pth.tar, but its {trained} shows "
                                      "that a run trained there")
    assert f"--resume {tmp_path / trained}" in str(info.value)


def test_one_live_run_holds_the_folder(tmp_path):
    first, second = RunFolder(str(tmp_path / "run")), RunFolder(str(tmp_path / "run"))
    first.claim()
    lock = (tmp_path / "run" / LOCK_NAME).read_text()
    assert lock.startswith(f"pid {os.getpid()} on ")
    with pytest.raises(UserError) as info:
        second.claim()  # another open file description: flock refuses it, also in the same process
    assert f"{tmp_path / 'run'} is in use by another run (pid {os.getpid()} on " in str(info.value)
    assert "--output-dir" in str(info.value)
    first.release()
    second.claim()  # a released (or dead) holder's folder is taken over
    second.release()
    second.release()  # twice is harmless


def test_claiming_removes_what_a_killed_run_left_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    leftover = run / f".checkpoint.pth.tar{TEMP_TAG}k1ll3d"
    leftover.write_bytes(b"partial")
    (run / "checkpoint.pth.tar").write_bytes(b"kept")
    folder = RunFolder(str(run))
    folder.claim()
    try:
        assert not leftover.exists() and (run / "checkpoint.pth.tar").read_bytes() == b"kept"
    finally:
        folder.release()
