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
    assert [t["backend"] for t in report["transfer"]] == ["pil", "tensor", "gpu"]  # worker -> main hand-over
    assert all(t["batches_s"] > 0 and t["img_s"] == t["batches_s"] * 2 for t in report["transfer"])
    assert "worker->main transfer (gpu, 1 workers" in result.stdout
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
    # By default Table 1 follows: the ResNet-50 attention variants, with the parameters each adds over
    # resnet50 (the paper's #Param column summed over the 16 blocks of widths C).
    widths = [w * 4 for w, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)) for _ in range(blocks)]
    table1 = result.stdout[result.stdout.index("Paper Table 1"):].splitlines()
    # Cells: method, arch, --ksize, Param, FLOPs, params added, MACs added.
    cells = [line.strip("| ").split(" | ") for line in table1
             if line.startswith("| ") and "| method |" not in line]
    rows = {row[1]: row for row in cells}
    assert list(rows) == ["resnet50", "se_resnet50", "se_var1_resnet50", "se_var2_resnet50", "se_var3_resnet50",
                          "eca_ns_resnet50", "eca_resnet50"]
    added = {arch: int(row[5].replace(",", "")) for arch, row in rows.items()}
    assert added == {"resnet50": 0, "se_resnet50": sum(2 * c * c // 16 for c in widths), "se_var1_resnet50": 0,
                     "se_var2_resnet50": sum(widths), "se_var3_resnet50": sum(c * c for c in widths),
                     "eca_ns_resnet50": 3 * sum(widths), "eca_resnet50": 3 * len(widths)}
    assert rows["eca_resnet50"][2] == rows["eca_ns_resnet50"][2] == "3"  # Table 1 compares at k = 3
    assert rows["resnet50"][3] == "24.37M" and rows["se_resnet50"][3] == "26.77M"
    # thop: Var3's C x C multiply-adds are counted on top of the pools that Var1 and Var2 share.
    macs = {arch: int(row[6].replace(",", "")) for arch, row in rows.items()}
    assert macs["se_var2_resnet50"] == macs["se_var1_resnet50"] > 0
    assert macs["se_var3_resnet50"] - macs["se_var1_resnet50"] == sum(c * c for c in widths)


def run_recipe_with_shims(tmp_path, recipe: str):
    """Run a recipe with stand-ins for torchrun and python that record their arguments: (train, evaluate)."""
    shims = tmp_path / "bin"
    shims.mkdir(parents=True)
    log = tmp_path / "calls.txt"
    for name in ("torchrun", "python", "nvidia-smi"):
        path = shims / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}", NPROC="8")
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "recipes", recipe), "/data/in1k"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    train, evaluate = log.read_text().splitlines()
    return train, evaluate


RESNET_RECIPE = "--epochs 100 -b 256 --lr 0.1 --momentum 0.9 --wd 1e-4 --lr-schedule step --lr-step 30 --lr-gamma 0.1"


def test_recipe_passes_the_paper_hyperparameters(tmp_path):
    train, evaluate = run_recipe_with_shims(tmp_path, "eca_resnet50.sh")
    assert train.startswith("torchrun --nproc_per_node=8 main.py -a eca_resnet50 --ksize 3557 --epochs 100 -b 256 "
                            "--lr 0.1 --momentum 0.9 --wd 1e-4 --lr-schedule step --lr-step 30 --lr-gamma 0.1")
    assert train.endswith("--output-dir runs/eca_resnet50_k3557 /data/in1k")
    assert evaluate == "python main.py -e --resume runs/eca_resnet50_k3557/model_best.pth.tar " \
                       "--output-dir runs/eca_resnet50_k3557 /data/in1k"


# The paper's Table 1 rows beyond the Table 3 recipes: recipe file -> (arch, --ksize or None).
TABLE1_RECIPES = {"se_var1_resnet50.sh": ("se_var1_resnet50", None), "se_var2_resnet50.sh": ("se_var2_resnet50", None),
                  "se_var3_resnet50.sh": ("se_var3_resnet50", None), "eca_ns_resnet50.sh": ("eca_ns_resnet50", "3"),
                  "eca_resnet50_k3.sh": ("eca_resnet50", "3")}


def test_every_paper_model_has_a_recipe():
    recipes = set(os.listdir(os.path.join(ROOT, "scripts", "recipes")))
    for arch in ("eca_resnet18", "eca_resnet34", "eca_resnet50", "eca_resnet101", "eca_resnet152",
                 "eca_mobilenet_v2", "resnet50", "se_resnet50", "cbam_resnet50"):
        assert f"{arch}.sh" in recipes, arch
    for recipe in TABLE1_RECIPES:
        assert recipe in recipes, recipe


def evaluated_arch(evaluate: str, trained_arch: str, ksize) -> str:
    """The model `main.py -e ...` builds: the -a given, else what the checkpoint of `trained_arch` says: its
    `arch` field (our trainer writes it) where it fits the tensors, else the registered arch whose keys the
    tensors hold (main.py reads it from them when -a is absent)."""
    from models.weights import infer_arch

    args = evaluate.split()
    if "-a" in args:
        return args[args.index("-a") + 1]
    with torch.device("meta"):  # key names only
        return infer_arch(create_model(trained_arch, k_size=ksize).state_dict(), label=trained_arch)


def test_table1_recipes_train_and_evaluate_the_row_model(tmp_path):
    for index, (recipe, (arch, ksize)) in enumerate(TABLE1_RECIPES.items()):
        train, evaluate = run_recipe_with_shims(tmp_path / str(index), recipe)
        kflag = f" --ksize {ksize}" if ksize else ""
        run_dir = f"runs/{arch}{'_k' + ksize if ksize else ''}"
        assert train == (f"torchrun --nproc_per_node=8 main.py -a {arch}{kflag} {RESNET_RECIPE} "
                         f"--resume auto --output-dir {run_dir} /data/in1k"), recipe
        assert evaluate.startswith("python main.py -e ") and f"--resume {run_dir}/model_best.pth.tar " in evaluate
        assert evaluate.endswith(f"--output-dir {run_dir} /data/in1k"), recipe
        # SE-Var1 has no parameters, so its checkpoint's keys are resnet50's: its `arch` field tells them apart.
        assert evaluated_arch(evaluate, arch, ksize) == arch, recipe


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
