"""scripts/benchmarks/official_parity.py without the official code or any training: the edits to the official code
find their text or stop the study, our flags say the same recipe to main.py, seeds and spreads, and results that
accumulate (runs already done are not repeated)."""
import json

import pytest

import main
from scripts.benchmarks import official_parity
from tests.helpers import parsed_flags


def official_tree(root, drop=None):
    """A stand-in for the official checkout holding exactly the text each edit replaces."""
    files = {}
    for name, old, _new, copies in official_parity.OFFICIAL_EDITS:
        if old != drop:
            files.setdefault(name, []).extend([old] * copies)
    for name, lines in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    (root / ".git").mkdir()
    return root


def test_every_edit_is_applied_with_the_lr_step(tmp_path):
    source = official_tree(tmp_path / "ECANet")
    target = official_parity.prepare_official(str(source), str(tmp_path / "work"), lr_step=4)
    code = (tmp_path / "work" / "official" / "main.py").read_text()
    assert "model = torch.nn.DataParallel(model)\n" in code and ".cuda()" not in code
    assert code.count("target = target\n") == 2 and "(0.1 ** (epoch // 4))" in code
    assert "transforms.RandomResizedCrop(56)" in code and "reshape(-1)" in code
    assert "nn.AdaptiveAvgPool2d(1)" in (tmp_path / "work" / "official" / "models" / "eca_resnet.py").read_text()
    assert target == str(tmp_path / "work" / "official")
    assert not (tmp_path / "work" / "official" / ".git").exists()


def test_a_changed_official_code_stops_the_study(tmp_path):
    source = official_tree(tmp_path / "ECANet", drop="correct[:k].view(-1)")
    with pytest.raises(SystemExit, match=r"main.py holds 0 copies of 'correct\[:k\].view\(-1\)' \(expected 1\)"):
        official_parity.prepare_official(str(source), str(tmp_path / "work"), lr_step=4)


def test_our_flags_say_the_official_recipe():
    args = parsed_flags(main.RECIPE, [*official_parity.OURS_FLAGS, "--lr-step", "4", "-b", "64", "/data"])
    assert (args.arch, args.ksize, args.num_classes, args.crop_size, args.val_resize) == \
        ("eca_resnet18", "3333", 1000, 56, 64)
    assert (args.lr, args.momentum, args.weight_decay, args.lr_schedule, args.lr_step, args.lr_gamma) == \
        (0.1, 0.9, 1e-4, "step", 4, 0.1)
    assert args.official_numerics and not args.progress and not args.tensorboard


def test_seeds_and_spreads():
    assert official_parity.seed_list("1-4") == [1, 2, 3, 4] and official_parity.seed_list("1,2,5") == [1, 2, 5]
    assert official_parity.spread([10.0, 20.0]) == " 15.0 ±  7.1 (10.0-20.0)"
    assert official_parity.spread([3.0]) == "  3.0 ±  0.0 (3.0-3.0)"


def test_results_accumulate_and_runs_done_are_not_repeated(tmp_path, monkeypatch, capsys):
    results = tmp_path / "parity.json"
    results.write_text(json.dumps({"ours": {"1": [10.0, 20.0]}}))
    ran = []

    def fake_ours(data, seed, args, workdir):
        ran.append(seed)
        return [float(seed), float(seed) + 1]

    monkeypatch.setattr(official_parity, "run_ours", fake_ours)
    assert official_parity.main(["--which", "ours", "--seeds", "1-3", "--epochs", "2", "--data", str(tmp_path),
                                 "--results", str(results)]) == 0
    assert ran == [2, 3]
    assert json.loads(results.read_text()) == {"ours": {"1": [10.0, 20.0], "2": [2.0, 3.0], "3": [3.0, 4.0]}}
    out = capsys.readouterr().out
    assert "seed   2:   2.0   3.0" in out and "epoch 2:" in out and "n=3" in out


def test_the_official_runs_need_the_official_code(capsys):
    with pytest.raises(SystemExit) as info:
        official_parity.main(["--which", "official,ours"])
    assert info.value.code == 2 and "--official PATH" in capsys.readouterr().err
