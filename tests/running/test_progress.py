"""utils/running/progress.py: plain lines in the official layout when the output is no terminal (or with
--no-progress), nothing on other ranks."""
import re

import pytest

from utils.running import progress
from utils.running.progress import Progress, StepReport, official_line

REPORT = StepReport(epoch=3, step=200, total=5004, step_s=0.2141, step_s_avg=0.22, data_s=0.0031, data_s_avg=0.004,
                    loss=3.12344, loss_avg=3.23449, top1=32.8125, top1_avg=30.1142, lr=0.1, images_per_s=1196.4)

OFFICIAL = (r"^Epoch: \[(\d+)\]\[(\d+)/(\d+)\]\tTime [\d.]+ \([\d.]+\)\tData [\d.]+ \([\d.]+\)\tLoss [\d.]+ \([\d.]+\)\t"
            r"Prec@1 [\d.]+ \([\d.]+\)\tlr [\d.e-]+\timg/s \d+$")


def test_the_official_line():
    line = official_line(REPORT)
    assert line == ("Epoch: [3][200/5004]\tTime 0.214 (0.220)\tData 0.003 (0.004)\tLoss 3.1234 (3.2345)\t"
                    "Prec@1 32.812 (30.114)\tlr 0.1\timg/s 1196")
    assert re.match(OFFICIAL, line)


def test_lines_when_the_output_is_a_file(capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    bar = Progress("Epoch 3", total=5004, initial=199)
    assert bar.lines  # capsys: not a terminal
    bar.advance()  # a step without a reading: nothing printed
    bar.advance(REPORT)
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == official_line(REPORT) + "\n"
    assert "\r" not in captured.out + captured.err


def test_bars_in_a_terminal_and_lines_without_progress(monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(progress, "in_terminal", lambda: True)
    bar = Progress("Epoch 0", total=10)
    assert not bar.lines and not bar.bar.disable
    bar.advance(REPORT)
    assert bar.bar.n == 1 and "top1" in str(bar.bar.postfix)
    bar.close()
    assert official_line(REPORT) not in capsys.readouterr().out
    assert Progress("Epoch 0", total=10, bars=False).lines  # --no-progress


@pytest.mark.parametrize("terminal", [True, False])
def test_other_ranks_show_nothing(monkeypatch, capsys, terminal):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(progress, "in_terminal", lambda: terminal)
    bar = Progress("Epoch 0", total=10)
    bar.advance(REPORT)
    bar.close()
    assert not bar.lines and bar.bar.disable
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
