"""The scripts around training: benchmark smoke test, Table 3 script, recipes, torch.hub entry points."""
import json
import os
import stat
import subprocess

import torch

from models import create_model, list_models
from tests.helpers import ROOT, make_image_folder, run_script


def test_benchmark_runs_on_cpu_and_reports_ratios(tmp_path):
    out = tmp_path / "bench.json"
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=1)
    result = run_script("scripts/benchmark.py", ["--archs", "eca_resnet18,resnet18", "--settings", "official",
                                                 "--batch-size", "2", "--image-size", "32", "--steps", "1",
                                                 "--warmup", "1", "--repeats", "1", "--cpu", "--json", str(out),
                                                 "--data", data, "--workers", "1", "--loader-batches", "2"])
    assert result.returncode == 0, result.stderr
    report = json.load(open(out))
    assert [(r["arch"], r["setting"]) for r in report["results"]] == [("eca_resnet18", "official"),
                                                                      ("resnet18", "official")]
    assert all(r["train_img_s"] > 0 and r["eval_img_s"] > 0 for r in report["results"])
    assert [r["what"] for r in report["ratios"]] == ["eca_resnet18 / resnet18 (official)"]
    assert report["counts"]["eca_resnet18"]["params"] == 11689556
    assert "| eca_resnet18 | official | 11.15M |" in result.stdout
    assert [p["backend"] for p in report["pipeline"]] == ["pil", "tensor", "gpu"]
    assert all(p["img_s"] > 0 for p in report["pipeline"])
    for r in report["results"]:  # training fed from the folder, through each pipeline
        assert sorted(r["from_folder"]) == ["gpu", "pil", "tensor"] and all(v > 0 for v in r["from_folder"].values())
    assert "eca_resnet18 official training from" in result.stdout and "of synthetic" in result.stdout


def test_block_end_benchmark_runs_on_cpu():
    result = run_script("scripts/benchmark_block_end.py", ["--cpu", "--batch", "2", "--channels", "16", "--size",
                                                           "4", "--calls", "1", "--warmup", "1", "--repeats", "1",
                                                           "--modes", "eager"])
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| eager |")]
    assert [row.split(" | ")[1] for row in rows] == ["plain", "eca conv", "eca shifted", "eca fused"]
    assert "| eager | plain | " in rows[0] and "(1.00x)" in rows[0]


def test_table3_script_prints_the_paper_columns():
    result = run_script("scripts/table3_params_flops.py", [])
    assert result.returncode == 0, result.stderr
    for row in ("| ResNet-50 | SENet | 26.77M |", "| ResNet-101 | ECA-Net | 42.49M | 7.33G |",
                "| ResNet-152 | SENet | 63.68M |", "| MobileNetV2 | SENet | 3.40M |", "| ResNet-152 | CBAM | – | – |"):
        assert row in result.stdout, row


def test_recipe_passes_the_paper_hyperparameters(tmp_path):
    """Run a recipe with stand-ins for torchrun and python that record their arguments."""
    shims = tmp_path / "bin"
    shims.mkdir()
    log = tmp_path / "calls.txt"
    for name in ("torchrun", "python", "nvidia-smi"):
        path = shims / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}", NPROC="8")
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts/recipes/eca_resnet50.sh"), "/data/in1k"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    train, evaluate = log.read_text().splitlines()
    assert train.startswith("torchrun --nproc_per_node=8 main.py -a eca_resnet50 --ksize 3557 --epochs 100 -b 256 "
                            "--lr 0.1 --momentum 0.9 --wd 1e-4 --lr-schedule step --lr-step 30 --lr-gamma 0.1")
    assert train.endswith("--output-dir runs/eca_resnet50_k3557 /data/in1k")
    assert evaluate == "python main.py -e --resume runs/eca_resnet50_k3557/model_best.pth.tar " \
                       "--output-dir runs/eca_resnet50_k3557 /data/in1k"


def test_every_paper_model_has_a_recipe():
    recipes = set(os.listdir(os.path.join(ROOT, "scripts", "recipes")))
    for arch in ("eca_resnet18", "eca_resnet34", "eca_resnet50", "eca_resnet101", "eca_resnet152",
                 "eca_mobilenet_v2", "resnet50", "se_resnet50", "cbam_resnet50"):
        assert f"{arch}.sh" in recipes, arch


def test_torch_hub_builds_every_model_and_loads_a_file(tmp_path):
    import hubconf  # torch.hub.list reads only GitHub repositories; check the entry points directly

    entries = sorted(n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_"))
    assert [n for n in entries if n not in ("create_model", "list_models")] == list_models()
    net = torch.hub.load(ROOT, "eca_resnet50", source="local", k_size="3,3,3,3", num_classes=7)
    assert net.k_size == [3, 3, 3, 3] and net.fc.out_features == 7
    weights = create_model("eca_resnet18", num_classes=4).state_dict()
    path = tmp_path / "w.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}}, path)
    loaded = torch.hub.load(ROOT, "eca_resnet18", source="local", num_classes=4, pretrained=str(path))
    assert torch.equal(loaded.state_dict()["fc.weight"], weights["fc.weight"])
