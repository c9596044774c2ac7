"""Two processes through torchrun (gloo on CPU): training and resume, exact evaluation, the computation of a
step, a rank that dies, and the official manual launch."""
import csv
import json
import os
import subprocess
import sys

import torch

import main
from tests.e2e.processes import free_port, torchrun, torchrun_command, wait_until_workers_handle
from tests.helpers import ROOT, TINY, make_image_folder
from utils.running.runner import run


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_two_process_training_and_resume_with_mixing_and_the_moving_average(tmp_path):
    """Two processes train an epoch, then resume (--resume auto) for a second, with MixUp/CutMix and the moving
    average on: only rank 0 prints and writes, and the average is checkpointed and evaluated beside the model."""
    data = make_image_folder(tmp_path / "data", train_per_class=8, val_per_class=3)
    out = tmp_path / "run"
    common = ["-a", "eca_resnet18", "--seed", "0", "--output-dir", str(out), *TINY, "--mixup-alpha", "0.2",
              "--cutmix-alpha", "1.0", "--model-ema", "--model-ema-steps", "1", "--resume", "auto", data]
    first = torchrun("main.py", ["--epochs", "1", *common])
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("Epoch 0:") == 1, "only rank 0 prints"
    assert "processes=2" in first.stdout
    files = sorted(f for f in os.listdir(out) if f.endswith(".pth.tar"))
    assert files == ["checkpoint.pth.tar", "model_best.pth.tar"]
    second = torchrun("main.py", ["--epochs", "2", *common])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed" in second.stdout
    state = load(out / "checkpoint.pth.tar")
    assert state["epoch"] == 2 and int(state["model_ema"]["n_averaged"]) > 0
    assert second.stdout.count("EMA: Prec@1") == 1  # rank 0 only
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]


def test_evaluation_counts_every_image_once(tmp_path, capsys):
    """7 val images per class x 3 = 21: not divisible by 2 processes nor by the per-process batch of 2."""
    torch.manual_seed(0)
    from models import create_model

    ckpt = tmp_path / "w.pth.tar"
    torch.save({"state_dict": create_model("eca_resnet18", num_classes=3).state_dict()}, ckpt)
    data = make_image_folder(tmp_path / "data", val_per_class=7, splits=("val",))
    flags = ["-e", "--resume", str(ckpt), "-b", "4", "--crop-size", "32", "--val-resize", "36", "-j", "0",
             "--no-progress"]
    two = torchrun("main.py", [*flags, "--output-dir", str(tmp_path / "two"), "--predictions",
                               str(tmp_path / "two.csv"), data])
    assert two.returncode == 0, two.stderr[-3000:]
    assert run([*flags, "--output-dir", str(tmp_path / "one"), "--predictions", str(tmp_path / "one.csv"), data],
               main.RECIPE, main.BUILTIN, "") == 0  # one process: this one
    r2 = json.load(open(tmp_path / "two" / "eval_results.json"))
    r1 = json.load(open(tmp_path / "one" / "eval_results.json"))
    assert r2["count"] == r1["count"] == 21
    assert (r2["top1"], r2["top5"]) == (r1["top1"], r1["top5"])
    assert open(tmp_path / "two.csv").read() == open(tmp_path / "one.csv").read()


def reference_weights(data, world_size, global_batch=48, seed=5, lr=0.01):
    """What training must compute, written out: the runner's seeding, then for each step the mean
    loss of every process's shard of the global batch, gradients averaged over processes, SGD."""
    # The runs being checked compute with 2 threads (one process) or 1 thread per process (torchrun
    # here): the same thread count gives the same reduction order in the CPU convolutions.
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if world_size == 1 else 1)
    try:
        return _reference_steps(data, world_size, global_batch, seed, lr)
    finally:
        torch.set_num_threads(threads)


def _reference_steps(data, world_size, global_batch, seed, lr):
    from torchvision import datasets

    from models import create_model
    from utils.data.common import SeededSamples as LoaderSamples
    from utils.data.pil import train_transform
    from utils.data.samplers import ShardSampler
    from utils.seeds import derive_seed
    torch.manual_seed(seed)  # the runner's seeding before it builds the model: the official code's
    model = create_model(ARCH, num_classes=3).train()
    dataset = LoaderSamples(datasets.ImageFolder(os.path.join(data, "train"), train_transform(32)),
                            derive_seed(seed, "augmentation"))
    dataset.set_epoch(0)
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=0)
    per_process = global_batch // world_size
    # The runs' data order: a DistributedSampler seeded with the run's "data order" stream.
    shards = [list(ShardSampler(dataset, r, world_size, shuffle=True, seed=derive_seed(seed, "data order")))
              for r in range(world_size)]
    for step in range(len(shards[0]) // per_process):
        optimizer.zero_grad()
        for shard in shards:
            samples = [dataset[i] for i in shard[step * per_process:(step + 1) * per_process]]
            images, targets = torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples])
            (torch.nn.functional.cross_entropy(model(images), targets) / world_size).backward()
        optimizer.step()
    return model.state_dict()


ARCH = "eca_resnet18"


def test_two_processes_against_one_with_the_same_global_batch_and_the_fused_form(tmp_path):
    """Same global batch (48 = 2 x 24), the same samples per step and the same augmentation per sample.
    The runs cannot agree exactly, or even closely: BatchNorm normalises over each process's 24 samples
    instead of all 48 (SyncBatchNorm needs CUDA), which at initialisation changes the gradient
    direction completely (measured: |g_48 - mean(g_24, g_24')| / |g_48| is about 1.1 for conv1,
    and 1e-7 with BN in eval mode). So each run is compared with the computation it must perform:
    the 1-process run (in this process) with full-batch steps, the 2-process run with per-shard BN and averaged
    gradients. Tolerance: 1e-3 of the weight update (float summation order differs).

    Then --eca-impl fused under the same two processes ends with the weights and BN running statistics of
    --eca-impl conv (same function; only float rounding differs)."""
    data = make_image_folder(tmp_path / "data", train_per_class=32, val_per_class=2)
    common = ["-a", ARCH, "--epochs", "1", "--seed", "5", "--lr", "0.01", "--wd", "0", "-b", "48",
              "--crop-size", "32", "--val-resize", "36", "-j", "0", "--no-progress", "--no-tensorboard", data]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as the one-process CLI run on this machine
    try:
        assert run([*common, "--output-dir", str(tmp_path / "one")], main.RECIPE, main.BUILTIN, "") == 0
    finally:
        torch.set_num_threads(threads)
    runs = {}
    for impl in ("conv", "fused"):
        result = torchrun("main.py", [*common, "--eca-impl", impl, "--output-dir", str(tmp_path / impl)])
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"eca_impl={impl}" in result.stdout
        runs[impl] = load(tmp_path / impl / "checkpoint.pth.tar")["state_dict"]
    from models import create_model

    torch.manual_seed(5)
    init = create_model(ARCH, num_classes=3).state_dict()
    for world_size, trained in ((1, load(tmp_path / "one" / "checkpoint.pth.tar")["state_dict"]), (2, runs["conv"])):
        expected = reference_weights(data, world_size)
        for key in ("conv1.weight", "layer3.0.conv1.weight", "layer2.0.eca.conv.weight", "fc.weight", "fc.bias"):
            update = expected[key] - init[key]
            assert update.norm() > 0
            rel = ((trained[key] - expected[key]).norm() / update.norm()).item()
            assert rel < 1e-3, f"{world_size} process(es), {key}: off by {rel:.2e} of the update"
    # Measured against the training's change of the weights (the float-order tolerance above, 1e-3 of the
    # update), over the whole model: per tensor, the small biases that start at zero have updates as small as
    # the rounding BatchNorm over 24 samples amplifies (seed 5: layer4.0.bn1.bias differs by 1.1e-6 on an
    # update of 1e-3), while a wrongly wired fused form would differ by the size of the update itself.
    assert runs["conv"].keys() == runs["fused"].keys()
    floats = [key for key, value in runs["conv"].items() if value.is_floating_point()]
    difference = torch.cat([(runs["fused"][k] - runs["conv"][k]).flatten() for k in floats]).norm()
    update = torch.cat([(runs["conv"][k] - init[k]).flatten() for k in floats]).norm()
    assert (difference / update).item() < 1e-3, (difference, update)
    for key in floats:  # and no single tensor off by more than its own size's rounding
        scale = (runs["conv"][key] - init[key]).norm() + runs["conv"][key].norm()
        assert ((runs["fused"][key] - runs["conv"][key]).norm() / scale).item() < 1e-2, key
    for key in set(runs["conv"]) - set(floats):
        assert torch.equal(runs["fused"][key], runs["conv"][key]), key


def test_a_dead_rank_ends_the_job_instead_of_hanging(tmp_path):
    """SIGKILL one of two training processes: torchrun must end the other and fail, not wait forever."""
    import signal

    data = make_image_folder(tmp_path / "data", train_per_class=60, val_per_class=2)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = torchrun_command("main.py", ["-a", "resnet18", "--epochs", "50", "--dist-timeout", "0.1", *TINY, "-b", "4",
                                       "--output-dir", str(tmp_path / "run"), data])
    launcher = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = wait_until_workers_handle(launcher)  # both are in the run, holding their process group
    os.kill(workers[1], signal.SIGKILL)
    try:
        _, stderr = launcher.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        launcher.kill()
        raise AssertionError("the job hung after one rank died")
    assert launcher.returncode != 0
    assert "Signal 9" in stderr or "SIGKILL" in stderr or "exitcode" in stderr, stderr[-2000:]


def test_official_manual_launch_flags(tmp_path):
    """Without torchrun: one command per process with --world-size, --rank and --dist-url (official form)."""
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    url = f"tcp://127.0.0.1:{free_port()}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), "-a", "resnet18", "--epochs", "1",
                               "--world-size", "2", "--rank", str(rank), "--dist-url", url, "--dist-backend", "gloo",
                               *TINY, "--output-dir", str(tmp_path / "run"), data],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "processes=2" in outputs[0][0] and outputs[1][0] == ""
    assert (tmp_path / "run" / "checkpoint.pth.tar").exists()


