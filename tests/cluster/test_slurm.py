"""scripts/slurm/train.sbatch on a real one-node SLURM (tests/cluster/run.sh starts one): every way a job
can be stopped ends with the run trained exactly once over all its epochs, or with the job ended once
and status.json saying why. Jobs train eca_resnet18 on 160 images of the built-in demo dataset.

Each test has a scenario, named like it without `test_`: it submits a job and disturbs it. All selected
scenarios run at once (the jobs share the node, each with its own rendezvous port), then each test
checks how its job ended. Run them with tests/cluster/run.sh (it gives pytest a private --basetemp: other
pytest sessions on the machine prune /tmp/pytest-of-$USER while the jobs still write there)."""
import os
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cluster.slurm_jobs import (EPOCHS, STEPS, TRAIN_ARGS, assert_nothing_left, assert_same_weights,
                                      cancel_unfinished, cluster_missing, demo_subset, epochs_logged, slurm, submit)

MISSING = cluster_missing()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason=MISSING or "cluster up")]
ALL_EPOCHS = list(range(EPOCHS))
RESUME_LINE = r"^=> resume with: "
# SLURM's real time limit: at least a minute an attempt, and it only works when the workers install their
# stop handlers before SLURM's signal comes (0-30 s into an attempt, then the limit itself at 60-90 s): on
# a machine this loaded, startup can take longer. Off unless ECA_SLURM_REAL_TIME_LIMIT=1.
REAL_TIME_LIMIT = os.environ.get("ECA_SLURM_REAL_TIME_LIMIT") == "1"
SCENARIOS = {}


def scenario(play):
    SCENARIOS[play.__name__] = play
    return play


@pytest.fixture(scope="module")
def scenarios(request, tmp_path_factory):
    """Futures of (job, final scontrol record), one per scenario of a selected test, plus the references."""
    data = demo_subset(tmp_path_factory.mktemp("demo"))
    selected = {item.name[len("test_"):] for item in request.session.items} | {"straight_1", "straight_2"}
    if not REAL_TIME_LIMIT:
        selected.discard("real_time_limit")

    def run(name):
        job = SCENARIOS[name](tmp_path_factory.mktemp(name), data)
        return job, job.wait_end()

    try:
        with ThreadPoolExecutor(len(SCENARIOS)) as pool:
            yield {name: pool.submit(run, name) for name in SCENARIOS if name in selected}
    finally:
        cancel_unfinished()


@pytest.fixture
def ended(request, scenarios):
    return scenarios[request.node.name[len("test_"):]].result()


@pytest.fixture
def reference(scenarios):
    """The uninterrupted jobs by number of processes."""
    return {nproc: scenarios[f"straight_{nproc}"].result()[0] for nproc in (1, 2)}


def stop_mid_epoch(job):
    """Wait until the job trains epoch 1, a few steps in (its stop handlers long installed)."""
    job.wait_for(r"^Epoch: \[1\]\[3/")


def stopped_at(job):
    """(epoch, step) of the stop line `=> stopped by SIGTERM at epoch 1 step 7; checkpoint: ...`."""
    epoch, step = re.search(r"^=> stopped by \S+ at epoch (\d+) step (\d+);", job.text(), re.M).groups()
    return int(epoch), int(step)


def assert_requeued_and_finished(job, info, restarts=1):
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == str(restarts), (info, job.text()[-3000:])
    assert job.attempts() == ["PENDING"] * restarts + ["COMPLETED"]
    assert job.status().returncode == 0, job.status().stdout
    assert "second signal" not in job.text()


def assert_stopped_once_mid_epoch_and_resumed_exactly(job, info, reference):
    """One stop in epoch 1 with a mid-epoch checkpoint, one requeue, every epoch logged once, and the
    weights of the uninterrupted job (the README promises exact resumption on the CPU)."""
    assert_requeued_and_finished(job, info)
    assert len(re.findall(RESUME_LINE, job.text(), re.M)) == 1, job.text()[-3000:]
    epoch, step = stopped_at(job)
    assert epoch == 1 and 0 < step < STEPS
    assert re.search(rf"^=> resumed \S+: epoch 1 step {step}\b", job.text(), re.M)
    assert_same_weights(job, reference)
    assert_nothing_left(job)
    assert epochs_logged(job) == ALL_EPOCHS


def kill_training(job):
    """Like a node lost: torchrun and its workers killed at once, no chance to save."""
    pids = job.training_pids()
    assert pids, "no training processes found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


@scenario
def straight_1(folder, data):
    return submit(folder, "straight-1", data)


@scenario
def straight_2(folder, data):
    return submit(folder, "straight-2", data, nproc=2)


def test_uninterrupted_jobs_share_the_node(scenarios):
    runs = {nproc: scenarios[f"straight_{nproc}"].result() for nproc in (1, 2)}
    for nproc, (job, info) in runs.items():
        assert info["JobState"] == "COMPLETED" and info["Restarts"] == "0", (info, job.text()[-3000:])
        assert job.attempts() == ["COMPLETED"]
        assert epochs_logged(job) == ALL_EPOCHS
        assert job.status().returncode == 0 and "finished" in job.status().stdout
        assert re.search(rf"\bprocesses={nproc}\b", job.text()), f"not {nproc} training processes"
        assert not re.search(RESUME_LINE, job.text(), re.M)
        assert_nothing_left(job)
    (_, a), (_, b) = runs[1], runs[2]
    assert a["StartTime"] < b["EndTime"] and b["StartTime"] < a["EndTime"], "the two jobs did not overlap"


@scenario
def scontrol_requeue_mid_epoch(folder, data):
    job = submit(folder, "requeue", data)
    stop_mid_epoch(job)
    slurm("scontrol", "requeue", job.id)
    return job


def test_scontrol_requeue_mid_epoch(ended, reference):
    assert_stopped_once_mid_epoch_and_resumed_exactly(*ended, reference[1])


@scenario
def time_limit_signal_under_torchrun(folder, data):
    """--signal=B:TERM@N signals the batch shell alone; `scancel --signal=TERM --batch` is that delivery."""
    job = submit(folder, "timelimit", data, nproc=2, sbatch=["--signal=B:TERM@60"])
    stop_mid_epoch(job)
    slurm("scancel", "--signal=TERM", "--batch", job.id)
    return job


def test_time_limit_signal_under_torchrun(ended, reference):
    job, _ = ended
    assert len(re.findall(r"^=> SIGTERM received", job.text(), re.M)) == 2, "one stop request per worker"
    assert_stopped_once_mid_epoch_and_resumed_exactly(*ended, reference[2])


@scenario
def real_time_limit(folder, data):
    """--time=1 --signal=B:TERM@30: SLURM signals the batch shell at its first time-limit check, 0-30 s into
    each attempt (a signal before the workers' handlers are installed is ignored; then the time limit
    itself stops them). 6 epochs: at this CPU's speed more than one attempt."""
    return submit(folder, "timelimit-real", data, sbatch=["--time=1", "--signal=B:TERM@30"],
                  train_args=TRAIN_ARGS.replace(f"--epochs {EPOCHS}", "--epochs 6"))


@pytest.mark.skipif(not REAL_TIME_LIMIT, reason="SLURM's real time limit: set ECA_SLURM_REAL_TIME_LIMIT=1")
def test_real_time_limit(ended):
    """Whatever the timing: every attempt cut short saved a checkpoint and was requeued, each epoch was
    trained once, and the run finished."""
    job, info = ended
    restarts, ends = int(info["Restarts"]), job.attempts()
    # TIMEOUT: the last attempt finished its last steps past the limit (the run still records "finished")
    assert info["JobState"] in ("COMPLETED", "TIMEOUT") and job.status().returncode == 0, job.text()[-3000:]
    # an attempt stopped by the time limit itself is recorded as TIMEOUT, then requeued (PENDING)
    assert [end for end in ends[:-1] if end != "TIMEOUT"] == ["PENDING"] * restarts, ends
    assert len(re.findall(RESUME_LINE, job.text(), re.M)) == restarts, "an attempt ended without a checkpoint"
    assert "second signal" not in job.text()
    assert_nothing_left(job)
    assert epochs_logged(job) == list(range(6))
    if not restarts:
        pytest.skip("the run finished within its first attempt: the time limit was never reached")


@scenario
def usr1_to_every_step_under_torchrun(folder, data):
    job = submit(folder, "usr1", data, nproc=2)
    stop_mid_epoch(job)
    slurm("scancel", "--signal=USR1", job.id)
    return job


def test_usr1_to_every_step_under_torchrun(ended, reference):
    assert_stopped_once_mid_epoch_and_resumed_exactly(*ended, reference[2])


@scenario
def kill_9_mid_epoch(folder, data):
    job = submit(folder, "kill9", data)
    stop_mid_epoch(job)
    kill_training(job)
    return job


def test_kill_9_mid_epoch(ended, reference):
    """The attempt wrote a checkpoint before it was killed, so the job requeues; the next attempt restarts
    from the end of epoch 0 and, training being deterministic, ends with the uninterrupted weights."""
    job, info = ended
    assert_requeued_and_finished(job, info)
    assert re.search(r"^=> resumed \S+: epoch 1,", job.text(), re.M), job.text()[-3000:]
    assert not re.search(RESUME_LINE, job.text(), re.M)
    assert_same_weights(job, reference[1])
    assert_nothing_left(job)
    assert epochs_logged(job) == ALL_EPOCHS


@scenario
def kill_9_while_validating(folder, data):
    """Killed while validating epoch 0, its checkpoint ("epoch 1") already written. 200 validation
    images: about a second to hit."""
    job = submit(folder, "kill9val", demo_subset(folder / "data", val=20))
    job.wait_for(rf"^Epoch: \[0\]\[{STEPS}/{STEPS}\]")
    deadline = time.time() + 60
    while not (job.run / "checkpoint.pth.tar").exists() and time.time() < deadline:
        time.sleep(0.01)
    kill_training(job)
    assert not re.search(r"^Val: \[0\]", job.text(), re.M), "validation ended before the kill"
    return job


def test_kill_9_while_validating(ended, reference):
    """The next attempt starts at epoch 1, and metrics.csv must still get epoch 0's row."""
    job, info = ended
    assert_requeued_and_finished(job, info)
    assert re.search(r"^=> resumed \S+: epoch 1,", job.text(), re.M), job.text()[-3000:]
    assert_same_weights(job, reference[1])
    assert_nothing_left(job)
    assert epochs_logged(job) == ALL_EPOCHS, "an epoch's metrics row is lost"


@scenario
def user_scancel_is_not_requeued(folder, data):
    job = submit(folder, "scancel", data)
    stop_mid_epoch(job)
    slurm("scancel", job.id)
    return job


def test_user_scancel_is_not_requeued(ended):
    job, info = ended
    assert info["JobState"] == "CANCELLED" and info["Restarts"] == "0", (info, job.text()[-3000:])
    assert job.attempts() == ["CANCELLED"]
    assert len(re.findall(RESUME_LINE, job.text(), re.M)) == 1  # it saved: submitting it again continues
    status = job.status()
    assert status.returncode == 11 and "cancelled" in status.stdout and "stopped" in status.stdout, status.stdout
    assert_nothing_left(job)


@scenario
def failing_run_ends_the_job_once(folder, data):
    return submit(folder, "badflag", data, train_args="-a eca_resnet18 --epochs 2 --lr -1 --no-progress")


def test_failing_run_ends_the_job_once(ended):
    job, info = ended
    assert info["JobState"] == "FAILED" and info["Restarts"] == "0", (info, job.text()[-3000:])
    assert job.attempts() == ["FAILED"]
    assert "--lr must be >= 0" in job.text()
    assert_nothing_left(job)


@scenario
def requeued_attempt_that_fails_is_not_requeued_again(folder, data):
    """Stopped with a checkpoint (status.json "stopped"), requeued, and the dataset is gone by the next
    attempt, which fails before the run starts."""
    own_data = folder / "data"
    subprocess.run(["cp", "-a", data, str(own_data)], check=True)
    job = submit(folder, "gone", str(own_data))
    stop_mid_epoch(job)
    slurm("scancel", "--signal=TERM", "--batch", job.id)
    job.wait_for(RESUME_LINE)
    subprocess.run(["rm", "-r", str(own_data)], check=True)
    return job


def test_requeued_attempt_that_fails_is_not_requeued_again(ended):
    job, info = ended
    assert info["JobState"] == "FAILED" and info["Restarts"] == "1", (info, job.text()[-3000:])
    assert job.attempts() == ["PENDING", "FAILED"]
    status = job.status()
    assert status.returncode == 1 and "failed" in status.stdout, status.stdout
    assert_nothing_left(job)
