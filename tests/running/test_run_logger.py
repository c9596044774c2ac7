"""utils/running/run_logger.py: metrics.csv is appended one whole row per epoch (a row a crash left half written is
repaired first), read back for the best top-1 and the epochs done; TensorBoard failures are one error naming the
folder; other ranks write nothing."""
import csv
import json

import pytest

from utils.running.files import OutputWriteError
from utils.running.run_logger import RunLogger


def row(epoch, top1, **extra):
    return {"epoch": epoch, "lr": 0.1, "train_loss": 1.5, "val_top1": top1, **extra}


def read(path):
    return list(csv.DictReader(open(path, newline="")))


def test_rows_are_appended_under_one_header(tmp_path):
    logger = RunLogger(str(tmp_path), enabled=True, tensorboard=False)
    assert logger.rows() == [] and not logger.has_row(0) and logger.best_val_top1(before=5) == 0.0
    logger.log_epoch(row(0, 10.0))
    logger.log_epoch(row(1, 30.0))
    text = (tmp_path / "metrics.csv").read_text()
    assert text == "epoch,lr,train_loss,val_top1\n0,0.1,1.5,10.0\n1,0.1,1.5,30.0\n"
    again = RunLogger(str(tmp_path), enabled=True, tensorboard=False)  # a resumed run appends to the same file
    again.log_epoch(row(2, 20.0, extra_column="ignored"))
    assert [r["epoch"] for r in read(tmp_path / "metrics.csv")] == ["0", "1", "2"]
    assert "extra_column" not in (tmp_path / "metrics.csv").read_text()  # the file's header decides the columns
    assert again.has_row(1) and not again.has_row(3)
    assert again.best_val_top1(before=3) == 30.0 and again.best_val_top1(before=1) == 10.0


def test_a_half_written_row_is_removed_before_the_next_one(tmp_path):
    """A crash in the middle of a write (or a full disk) can leave a row without its newline: the next append
    removes it, so the file only ever holds whole rows."""
    logger = RunLogger(str(tmp_path), enabled=True, tensorboard=False)
    logger.log_epoch(row(0, 10.0))
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("1,0.1,1.4")  # half of epoch 1's row
    logger.log_epoch(row(1, 12.0))
    assert (tmp_path / "metrics.csv").read_text() == "epoch,lr,train_loss,val_top1\n0,0.1,1.5,10.0\n1,0.1,1.5,12.0\n"


def test_a_half_written_row_is_not_read_as_a_row(tmp_path):
    """Until it is repaired, a row without its newline is no epoch's row: a resumed run that finds its last epoch's
    row half written validates that epoch again and writes the row whole."""
    logger = RunLogger(str(tmp_path), enabled=True, tensorboard=False)
    logger.log_epoch(row(0, 10.0))
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("1,0.1,1.4,99")
    assert [r["epoch"] for r in logger.rows()] == ["0"]
    assert not logger.has_row(1) and logger.best_val_top1(before=5) == 10.0


def test_a_half_written_header_is_replaced(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,lr,tra")  # killed while writing the first line
    logger = RunLogger(str(tmp_path), enabled=True, tensorboard=False)
    assert logger.rows() == []
    logger.log_epoch(row(0, 10.0))
    assert (tmp_path / "metrics.csv").read_text() == "epoch,lr,train_loss,val_top1\n0,0.1,1.5,10.0\n"


def test_rows_that_are_no_epoch_are_ignored_when_reading(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,val_top1\n0,5.0\nx,99.0\n1,\n2,7.5\n")
    logger = RunLogger(str(tmp_path), enabled=True, tensorboard=False)
    assert logger.best_val_top1(before=10) == 7.5  # not x's 99, and epoch 1 has no val_top1
    assert logger.best_val_top1(before=2) == 5.0
    assert logger.has_row(1) and logger.has_row(2) and not logger.has_row(3)


def test_json_files_are_written_whole(tmp_path):
    logger = RunLogger(str(tmp_path / "run"), enabled=True, tensorboard=False)
    logger.write_json("args.json", {"lr": 0.1, "loss": float("nan")})
    assert json.loads((tmp_path / "run" / "args.json").read_text()) == {"lr": 0.1, "loss": None}


def test_other_ranks_write_nothing(tmp_path):
    logger = RunLogger(str(tmp_path / "run"), enabled=False, tensorboard=True)
    logger.log_epoch(row(0, 1.0))
    logger.write_json("args.json", {})
    logger.scalar("x", 1.0, 0)
    logger.close()
    assert not (tmp_path / "run").exists() and logger.writer is None


def test_scalars_go_to_tensorboard_with_their_group(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = RunLogger(str(tmp_path), enabled=True, tensorboard=True)
    logger.log_epoch(row(0, 10.0))
    logger.log_epoch(row(1, 30.0))
    logger.close()
    logger.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"val/top1", "train/loss", "lr"} <= set(events.Tags()["scalars"])
    assert [e.value for e in events.Scalars("val/top1")] == [10.0, 30.0]
    assert [e.step for e in events.Scalars("val/top1")] == [0, 1]


def test_a_failing_tensorboard_write_is_one_error_naming_the_folder(tmp_path, monkeypatch):
    logger = RunLogger(str(tmp_path), enabled=True, tensorboard=True)

    def full(*args, **kwargs):
        raise RuntimeError("EventFileWriter:\n No space left on device")

    monkeypatch.setattr(logger.writer, "add_scalar", full)
    with pytest.raises(OutputWriteError) as info:
        logger.log_epoch(row(0, 1.0))
    message = str(info.value)
    assert message.startswith(f"cannot write TensorBoard events in {tmp_path} (EventFileWriter: No space left on device)")
    assert "--no-tensorboard" in message and "\n" not in message
    assert [r["epoch"] for r in read(tmp_path / "metrics.csv")] == ["0"]  # the row was written before
    monkeypatch.undo()
    logger.close()
