"""scripts/run_status.py in-process: the line and exit code per state, the file path as argument, --mark keeping
the earlier state, a killed run read from its pid, and one-line errors."""
import json
import os
import socket

import pytest

from scripts import run_status
from utils.running.entry import run_cli


def status_cli(argv, capsys):
    code = run_cli(run_status.main, argv, prog="run_status.py")
    captured = capsys.readouterr()
    return code, captured.out.strip(), captured.err.strip()


def write(folder, **status):
    folder.mkdir(exist_ok=True)
    (folder / "status.json").write_text(json.dumps(status))


@pytest.mark.parametrize("state,code", list(run_status.EXIT.items()))
def test_each_state_has_its_exit_code_and_one_line(tmp_path, capsys, state, code):
    write(tmp_path / "run", state=state, message="why", time="t")
    assert status_cli([str(tmp_path / "run")], capsys) == (code, f"{tmp_path / 'run'}: {state} at t: why", "")


def test_the_status_file_names_its_run(tmp_path, capsys):
    write(tmp_path / "run", state="stopped", message="SIGTERM", time="t")
    code, out, _ = status_cli([str(tmp_path / "run" / "status.json")], capsys)
    assert code == 10 and out.startswith(f"{tmp_path / 'run'}: stopped")


def test_no_status_is_exit_2(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "status.json").write_text("{half")
    for name in ("run", "bad", "none"):
        code, out, _ = status_cli([str(tmp_path / name)], capsys)
        assert code == 2 and "no finished, stopped or failed run recorded" in out


def test_a_running_status_whose_process_is_gone_reads_as_killed(tmp_path, capsys):
    pid = os.getpid()
    write(tmp_path / "alive", state="running", message="", time="t", host=socket.gethostname(), pid=pid)
    assert "killed" not in status_cli([str(tmp_path / "alive")], capsys)[1]
    gone = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100000  # above every pid in use
    write(tmp_path / "dead", state="running", message="", time="t", host=socket.gethostname(), pid=gone)
    code, out, _ = status_cli([str(tmp_path / "dead")], capsys)
    assert code == 3 and out.endswith("(that process no longer runs: killed)")
    write(tmp_path / "elsewhere", state="running", message="", time="t", host="another-node", pid=gone)
    assert "killed" not in status_cli([str(tmp_path / "elsewhere")], capsys)[1]  # not this host's to judge


def test_mark_records_the_state_and_keeps_the_one_before(tmp_path, capsys):
    write(tmp_path / "run", state="stopped", message="SIGTERM received", time="t")
    code, out, _ = status_cli([str(tmp_path / "run"), "--mark", "cancelled", "--message", "job 7 cancelled"], capsys)
    assert code == 11 and "cancelled" in out
    saved = json.loads((tmp_path / "run" / "status.json").read_text())
    assert saved["state"] == "cancelled"
    assert saved["message"] == "job 7 cancelled (before: stopped: SIGTERM received)"
    assert [name for name in os.listdir(tmp_path / "run") if name != "status.json"] == []  # no temporary left


def test_mark_on_a_missing_folder_is_one_line_exit_2(tmp_path, capsys):
    code, out, err = status_cli([str(tmp_path / "none"), "--mark", "failed"], capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("run_status.py: error: --mark failed: ") and "--output-dir" in err
    assert not (tmp_path / "none").exists()
