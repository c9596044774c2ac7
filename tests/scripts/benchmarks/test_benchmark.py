"""scripts/benchmarks/benchmark.py on the CPU at tiny sizes: every measurement of a run with --data (models on
synthetic batches, each input pipeline alone, the worker hand-over, training from the folder), the ratios, the
tables, and a JSON that keeps what was measured before a stop."""
import json

import pytest

from scripts.benchmarks import benchmark
from tests.helpers import make_image_folder


def test_a_run_with_data_reports_every_measurement_and_the_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=1)
    assert benchmark.main(["--archs", "eca_resnet18,resnet18", "--settings", "official", "--batch-size", "2",
                           "--image-size", "32", "--steps", "1", "--warmup", "1", "--repeats", "1", "--cpu",
                           "--json", str(out), "--data", data, "--workers", "1", "--loader-batches", "2"]) == 0
    stdout = capsys.readouterr().out
    report = json.load(open(out))
    assert [(r["arch"], r["setting"]) for r in report["results"]] == [("eca_resnet18", "official"),
                                                                      ("resnet18", "official")]
    assert all(r["train_img_s"] > 0 and r["eval_img_s"] > 0 for r in report["results"])
    assert [r["what"] for r in report["ratios"]] == ["eca_resnet18 / resnet18 (official)"]
    assert report["counts"]["eca_resnet18"]["params"] == 11689556
    assert "| eca_resnet18 | official | 11.15M |" in stdout
    assert [p["backend"] for p in report["pipeline"]] == ["pil", "tensor", "gpu"]
    assert all(p["img_s"] > 0 for p in report["pipeline"])
    assert [t["backend"] for t in report["transfer"]] == ["pil", "tensor", "gpu"]  # worker -> main hand-over
    assert all(t["batches_s"] > 0 and t["img_s"] == t["batches_s"] * 2 for t in report["transfer"])
    assert "worker->main transfer (gpu, 1 workers" in stdout
    for r in report["results"]:  # training fed from the folder, through each pipeline
        assert sorted(r["from_folder"]) == ["gpu", "pil", "tensor"] and all(v > 0 for v in r["from_folder"].values())
    assert "eca_resnet18 official training from" in stdout and "of synthetic" in stdout


def test_the_json_keeps_what_was_measured_before_a_stop(tmp_path, monkeypatch):
    """The JSON is rewritten after each measurement: a run stopped during the second model (as a time
    limit stops it) leaves the first model's train and eval numbers on disk."""
    rates = iter([100.0, 300.0])

    def fake_rate(*_args):
        value = next(rates, None)
        if value is None:
            raise KeyboardInterrupt  # the time limit
        return value

    monkeypatch.setattr(benchmark, "timed_rate", fake_rate)
    out = tmp_path / "bench.json"
    with pytest.raises(KeyboardInterrupt):
        benchmark.main(["--archs", "eca_resnet18,resnet18", "--settings", "official", "--cpu", "--no-flops",
                        "--batch-size", "2", "--image-size", "32", "--json", str(out)])
    report = json.loads(out.read_text())
    assert [(r["arch"], r["train_img_s"], r["eval_img_s"]) for r in report["results"]] == [("eca_resnet18", 100.0,
                                                                                          300.0)]
    assert report["env"]["batch_size"] == 2


def test_ratios_against_the_official_setting_and_the_backbone():
    results = [{"arch": a, "setting": s, "train_img_s": t, "eval_img_s": e}
               for a, s, t, e in (("eca_resnet50", "official", 100.0, 300.0), ("eca_resnet50", "fast", 200.0, 900.0),
                                  ("resnet50", "official", 125.0, 400.0), ("eca_ns_resnet50", "official", 50.0, 100.0))]
    rows = {row["what"]: (row["train"], row["eval"]) for row in benchmark.ratios(results)}
    assert rows == {"eca_resnet50 fast / official": (2.0, 3.0), "eca_resnet50 / resnet50 (official)": (0.8, 0.75),
                    "eca_ns_resnet50 / resnet50 (official)": (0.4, 0.25)}
    assert benchmark.baseline_of("resnet50") is None


@pytest.mark.parametrize("argv,unknown", [(["--archs", "eca_resnet5"], "eca_resnet5"),
                                          (["--settings", "fastest"], "fastest"),
                                          (["--pipelines", "dali"], "dali"),
                                          (["--data-measures", "all"], "all"),
                                          (["--archs", "resnet18", "--folder-archs", "resnet50"], "resnet50")])
def test_unknown_names_are_refused_before_measuring(argv, unknown, capsys):
    with pytest.raises(SystemExit) as info:
        benchmark.parse_args(argv)
    assert info.value.code == 2
    assert f"unknown arch, setting, pipeline or measure: {unknown}" in capsys.readouterr().err


def test_every_setting_names_valid_numerics():
    for name, (amp, channels_last, compiled, eca_impl) in benchmark.SETTINGS.items():
        settings = benchmark.numerics_for(benchmark.torch.device("cpu"), amp, channels_last, compiled)
        assert (settings.amp, settings.channels_last, settings.compile) == (amp, channels_last, compiled), name
        assert eca_impl in ("conv", "shifted", "fused")
