"""utils/running/entry.py: the error contract of every command-line tool (a user error is one line and exit 2, a
failed run one line and exit 3) and output that cannot be shown never stopping the work. In-process here;
tests/e2e/test_streams.py closes a real process's stdout and breaks its pipe."""
import io
import os
import sys

import pytest

from utils.errors import RunError, UserError
from utils.running import entry
from utils.running.entry import _TolerantStream, protect_standard_streams, report_error, run_cli


def failing(exc):
    def main(argv):
        raise exc
    return main


@pytest.mark.parametrize("exc,code", [(UserError("--lr must be >= 0, got -1"), 2),
                                      (RunError("cannot write /x/checkpoint.pth.tar (No space left on device)"), 3)])
def test_errors_become_one_line_and_their_exit_code(exc, code, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert run_cli(failing(exc), [], prog="tool.py") == code
    captured = capsys.readouterr()
    assert captured.err == f"tool.py: error: {exc}\n" and captured.out == ""


def test_the_prog_name_defaults_to_the_script(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/paras_flops.py", "-a", "x"])
    assert run_cli(failing(UserError("bad")), None) == 2
    assert capsys.readouterr().err == "paras_flops.py: error: bad\n"


def test_a_worker_traceback_is_reported_by_its_last_line(capsys):
    wrapped = RunError("Caught CorruptImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                       "last):\n  File \"x.py\", line 1\nutils.data.common.CorruptImageError: cannot decode a.jpg (x)")
    assert run_cli(failing(wrapped), [], prog="main.py") == 3
    assert capsys.readouterr().err == "main.py: error: cannot decode a.jpg (x)\n"


def test_success_and_interrupt(capsys):
    assert run_cli(lambda argv: 0, [], prog="t") == 0
    assert run_cli(lambda argv: 5, [], prog="t") == 5
    assert run_cli(failing(KeyboardInterrupt()), [], prog="t") == 130
    assert capsys.readouterr().err == "t: interrupted\n"


def test_other_exceptions_are_bugs_and_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        run_cli(failing(ZeroDivisionError("a bug")), [], prog="t")


def test_ranks_report_a_user_error_once_and_each_its_own_run_error(capsys):
    report_error("main.py", UserError("same everywhere"), rank=1)
    assert capsys.readouterr().err == ""
    report_error("main.py", RunError("disk full here"), rank=1)
    assert capsys.readouterr().err == "[rank 1] main.py: error: disk full here\n"
    report_error("main.py", UserError("same everywhere"), rank=0)
    assert capsys.readouterr().err == "main.py: error: same everywhere\n"


def test_the_rank_comes_from_the_launcher(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    assert run_cli(failing(UserError("said by rank 0")), [], prog="main.py") == 2
    assert capsys.readouterr().err == ""


class GoneReader(io.StringIO):
    """A stream whose reader went away: every write and flush fails as a broken pipe does."""

    def __init__(self, error):
        super().__init__()
        self.error, self.writes = error, 0

    def write(self, text):
        self.writes += 1
        raise self.error

    def flush(self):
        raise self.error


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), OSError(9, "Bad file descriptor"),
                                   ValueError("I/O operation on closed file")])
def test_a_stream_whose_reader_is_gone_falls_silent(error):
    inner = GoneReader(error)
    stream = _TolerantStream(inner)
    assert stream.write("first line\n") == len("first line\n")
    stream.flush()
    assert stream.write("more\n") == 5 and inner.writes == 1  # silent from then on: no second attempt
    print("and print goes on", file=stream)


def test_a_working_stream_is_passed_through():
    inner = io.StringIO()
    stream = _TolerantStream(inner)
    stream.write("a")
    print("b", file=stream, flush=True)
    assert inner.getvalue() == "ab\n" and not stream.isatty()
    assert _TolerantStream(io.TextIOWrapper(io.BytesIO(), encoding="latin-1")).encoding == "latin-1"


def test_isatty_of_a_closed_stream_is_false():
    closed = io.StringIO()
    closed.close()
    assert _TolerantStream(closed).isatty() is False


def test_standard_streams_are_protected_once(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    protect_standard_streams()
    assert isinstance(sys.stdout, _TolerantStream) and sys.stdout.inner is out
    assert isinstance(sys.stderr, _TolerantStream) and sys.stderr.inner is err
    wrapped = sys.stdout
    protect_standard_streams()
    assert sys.stdout is wrapped  # not wrapped twice
    monkeypatch.setattr(sys, "stdout", None)  # pythonw, or a closed descriptor at start-up
    protect_standard_streams()
    print("dropped", file=sys.stdout)


def test_a_closed_descriptor_gets_devnull_so_files_never_take_it(monkeypatch):
    """Checked on descriptor numbers the process does not use: fstat fails, and the lowest free one is given
    /dev/null (what protect_standard_streams does for 0, 1 and 2)."""
    calls = []
    real_fstat = os.fstat

    def fstat(fd):
        if fd == 1:
            calls.append(fd)
            raise OSError(9, "Bad file descriptor")
        return real_fstat(fd)

    opened, duped = [], []
    monkeypatch.setattr(entry.os, "fstat", fstat)
    monkeypatch.setattr(entry.os, "open", lambda path, flags: opened.append(path) or 57)
    monkeypatch.setattr(entry.os, "dup2", lambda a, b: duped.append((a, b)))
    monkeypatch.setattr(entry.os, "close", lambda fd: None)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    protect_standard_streams()
    assert calls == [1] and opened == [os.devnull] and duped == [(57, 1)]
