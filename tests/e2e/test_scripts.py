"""The paper recipes (bash scripts, run with stand-ins for torchrun and python) and the torch.hub entry points.
The benchmark and Table 3 scripts are tested in-process under tests/scripts/."""
import os
import stat
import subprocess

import torch

from models import create_model, list_models
from tests.helpers import ROOT


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
