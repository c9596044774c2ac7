"""utils/training/schedule.py: the LambdaLR gives the recipe's rate at every step, also when it starts mid-run."""
import math
import warnings

import pytest
import torch

from tests.helpers import lr_schedule
from utils.training.schedule import build_scheduler, lr_at

STEPS = 7


def settings(name, lr=0.1, epochs=5, **kw):
    return lr_schedule(name, lr, epochs, **{"lr_step": 2, "lr_gamma": 0.5, **kw})


def rates(schedule, start=0, count=STEPS * 5):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=123.0)
    scheduler = build_scheduler(optimizer, schedule, STEPS, start)
    seen = []
    for _ in range(count - start):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_formulas_of_the_recipes():
    assert lr_at(settings("step"), 3, 4, STEPS) == 0.1 * 0.5 ** 1           # /2 every 2 epochs
    assert lr_at(settings("exp"), 3, 4, STEPS) == 0.1 * 0.5 ** 3            # per epoch
    assert lr_at(settings("cosine"), 0, 0, STEPS) == pytest.approx(0.1)
    assert lr_at(settings("cosine"), 5, 0, STEPS) == pytest.approx(0.0, abs=1e-12)
    warm = settings("step", warmup_epochs=1.0)
    assert lr_at(warm, 0, 0, STEPS) == pytest.approx(0.1 / STEPS)            # ramps from the first step
    assert lr_at(warm, 0, STEPS - 1, STEPS) == pytest.approx(0.1)


@pytest.mark.parametrize("name,warmup", [("step", 0.0), ("exp", 0.0), ("cosine", 1.5), ("step", 0.5)])
def test_lambda_lr_equals_the_formula_step_for_step(name, warmup):
    schedule = settings(name, warmup_epochs=warmup)
    expected = [lr_at(schedule, *divmod(g, STEPS), STEPS) for g in range(STEPS * 5)]
    assert rates(schedule) == expected  # exactly: the same float operations


def test_a_schedule_started_mid_run_continues_where_the_full_run_was():
    schedule = settings("cosine", warmup_epochs=0.5)
    full = rates(schedule)
    for start in (1, STEPS, 2 * STEPS + 3):
        assert rates(schedule, start=start) == full[start:]


def test_no_warning_when_an_update_is_skipped():
    """A skipped step (non-finite loss, fp16 overflow) still advances the schedule: torch's ordering
    warning does not apply, and does not show."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scheduler = build_scheduler(optimizer, settings("step"), STEPS)
        scheduler.step()  # before any optimizer.step()
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    assert math.isclose(optimizer.param_groups[0]["lr"], 0.1)
