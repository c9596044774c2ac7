"""Submit the real scripts/slurm/train.sbatch to the one-node test cluster (tests/cluster/slurm.sh up) and
inspect the job: its SLURM record (scontrol; no slurmdbd, so no sacct), every attempt's end (the
jobcomp/filetxt log), its log file and its run folder."""
import csv
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SBATCH = ROOT / "scripts" / "slurm" / "train.sbatch"
SLURM_DIR = Path(os.environ.get("ECA_SLURM_DIR", "/tmp/eca-slurm"))
SLURM_ENV = dict(os.environ, SLURM_CONF=str(SLURM_DIR / "slurm.conf"))
EPOCHS, STEPS = 2, 20  # 160 demo images, batch 8: 20 steps an epoch, about 2 s on one CPU core
TRAIN_ARGS = (f"-a eca_resnet18 --epochs {EPOCHS} -b 8 --lr 0.01 -p 1 --crop-size 32 --val-resize 36 -j 0 "
              "--no-progress --no-tensorboard --seed 0")
SUBMITTED = []  # every Job submit() made, for cancel_unfinished()
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def slurm(*args: str, check: bool = True) -> str:
    result = subprocess.run(args, env=SLURM_ENV, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 or not check, f"{' '.join(args)}: {(result.stderr or result.stdout).strip()}"
    return result.stdout


def cluster_missing() -> str:
    """Why the cluster cannot be used ('' when it can)."""
    if not (SLURM_DIR / "slurm.conf").exists():
        return f"no test cluster in {SLURM_DIR}: run tests/cluster/slurm.sh up (or tests/cluster/run.sh)"
    try:
        slurm("scontrol", "ping")
    except (OSError, AssertionError, subprocess.TimeoutExpired) as exc:
        return f"the test cluster in {SLURM_DIR} does not answer: {exc}"
    return ""


def demo_subset(root: Path, train: int = 16, val: int = 2) -> str:
    """The first images of each class of the built-in demo dataset, linked into a small ImageFolder."""
    import utils  # the repository's package; the module's place in it may change

    names = [m.name for m in pkgutil.walk_packages(utils.__path__, "utils.") if m.name.endswith(".builtin_dataset")]
    assert names, "no builtin_dataset module under utils/"
    demo = Path(importlib.import_module(names[0]).ensure_builtin_dataset())
    for split, count in (("train", train), ("val", val)):
        for folder in sorted((demo / split).iterdir()):
            (root / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.iterdir())[:count]:
                (root / split / folder.name / image.name).symlink_to(image)
    return str(root)


class Job:
    def __init__(self, job_id: str, folder: Path):
        self.id, self.folder = job_id, folder
        self.run, self.log = folder / "run", folder / "job.log"

    def info(self) -> dict:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, StartTime, ...)."""
        return dict(field.split("=", 1) for field in slurm("scontrol", "-o", "show", "job", self.id).split()
                    if "=" in field)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match:
        """The first match of `pattern` (a regex, multiline) in the log, once it appears."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            match = re.search(pattern, self.text(), re.M)
            if match:
                return match
            assert self.info()["JobState"] not in ENDED, f"job ended before {pattern!r}:\n{self.text()[-3000:]}"
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the log within {timeout} s:\n{self.text()[-3000:]}")

    def wait_end(self, timeout: float = 420) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            info = self.info()
            if info["JobState"] in ENDED:
                return info
            time.sleep(0.2)
        slurm("scancel", self.id, check=False)
        raise AssertionError(f"job {self.id} still {info['JobState']} after {timeout} s:\n{self.text()[-3000:]}")

    def attempts(self) -> list:
        """How each attempt ended, from the jobcomp log: PENDING for one that was requeued."""
        log = (SLURM_DIR / "jobcomp.log").read_text()
        return re.findall(rf"^JobId={self.id} .*? JobState=(\S+)", log, re.M)

    def training_pids(self) -> list:
        """The processes of the job's training step (torchrun and its workers), not the batch shell's."""
        rows = [line.split() for line in slurm("scontrol", "listpids", self.id).splitlines()[1:]]
        return [int(row[0]) for row in rows if len(row) > 2 and row[2] not in ("batch", "extern", "-")]

    def processes(self) -> list:
        """Every process still carrying this job's id in its environment."""
        found = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                if f"SLURM_JOB_ID={self.id}".encode() in environ.read_bytes().split(b"\0"):
                    found.append(int(environ.parent.name))
            except OSError:
                pass
        return found

    def status(self) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "run_status.py"), str(self.run)],
                              capture_output=True, text=True)


def submit(folder: Path, name: str, data: str, nproc: int = 1, train_args: str = TRAIN_ARGS, sbatch=(),
           **env) -> Job:
    """sbatch the real train.sbatch as the README says for a CPU node: settings in the environment,
    --gpus-per-node=0 and the rest as sbatch options overriding the script's #SBATCH lines."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = dict(DATA=data, RUN=str(folder / "run"), NPROC=str(nproc), TRAIN_ARGS=train_args,
                    PYTHON=sys.executable, REPO=str(ROOT), OMP_NUM_THREADS="1", **env)
    result = subprocess.run(["sbatch", "--parsable", f"--job-name={name}", "--nodes=1", "--gpus-per-node=0",
                             "--cpus-per-task=1", f"--output={folder / 'job.log'}", *sbatch, str(SBATCH)],
                            env={**SLURM_ENV, **settings}, cwd=folder, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    SUBMITTED.append(Job(result.stdout.strip().split(";")[0], folder))
    return SUBMITTED[-1]


def cancel_unfinished() -> None:
    """scancel the jobs a failed test left running."""
    for job in SUBMITTED:
        if job.info().get("JobState") not in ENDED:
            slurm("scancel", job.id, check=False)


def epochs_logged(job: Job) -> list:
    with open(job.run / "metrics.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def weights(job: Job) -> dict:
    return torch.load(job.run / "checkpoint.pth.tar", map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Job, b: Job) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    differ = [key for key in wa if not torch.equal(wa[key], wb[key])]
    assert not differ, f"{len(differ)} of {len(wa)} tensors differ, e.g. {differ[:3]}"


def assert_nothing_left(job: Job) -> None:
    """A plain log, no held lock, no process of the job alive, no temporary files in the run folder."""
    text = job.text()
    assert "\r" not in text, "carriage returns in the log"
    deadline = time.time() + 15
    while job.processes() and time.time() < deadline:
        time.sleep(0.2)
    assert not job.processes(), f"processes of job {job.id} left: {job.processes()}"
    if (job.run / ".lock").exists():
        held = subprocess.run(["flock", "-n", str(job.run / ".lock"), "true"]).returncode
        assert held == 0, "the run folder's .lock is still held"
    if job.run.exists():
        assert not list(job.run.glob(".*.partial-*")), f"temporary files left: {list(job.run.glob('.*.partial-*'))}"
