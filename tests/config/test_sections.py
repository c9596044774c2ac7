"""utils/config/sections.py: every option declared once with its check, and the checks that relate a section's
options; each problem is one line that names the flag and the fix."""
import dataclasses

import pytest

from models import list_models
from utils.config.sections import (SECTIONS, AugmentSettings, DataSettings, EmaSettings, LaunchSettings,
                                   LoopSettings, MixSettings, ModelSettings, NumericsSettings, OptimSettings,
                                   OutputSettings, RunSettings, ScheduleSettings)
from utils.errors import UserError


def test_every_option_name_is_declared_in_one_section_only():
    seen = {}
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f.name not in seen, f"{f.name} in {seen.get(f.name)} and {name}"
            seen[f.name] = name
    assert list(SECTIONS) == ["run", "model", "data", "augment", "numerics", "optim", "schedule", "loop", "mix",
                              "ema", "output", "launch"]


def test_every_option_has_help_and_flags_that_start_with_a_dash():
    for cls in SECTIONS.values():
        for name, opt in cls.options():
            assert opt.help.strip(), name
            assert all(flag.startswith("-") for flag in opt.flags), name
    assert [name for cls in SECTIONS.values() for name, opt in cls.options() if not opt.flags] == ["data"]


def data(**kw):
    return DataSettings(**{"batch_size": 8, "crop_size": 32, "val_resize": 36, **kw})


def test_data_crops_default_to_the_crop_size_and_must_fit_the_resize():
    settings = data(train_crop_size=28)
    assert (settings.train_crop, settings.val_crop) == (28, 32)
    with pytest.raises(UserError, match=r"^--crop-size 40 exceeds --val-resize 36: the center crop must fit"):
        data(crop_size=40)
    with pytest.raises(UserError, match=r"^--val-crop-size 37 exceeds --val-resize 36"):
        data(val_crop_size=37)
    with pytest.raises(UserError, match=r"^--crop-size 5000 is larger than 4096 pixels: ImageNet models train at 224$"):
        data(crop_size=5000, val_resize=5000)
    with pytest.raises(UserError, match=r"^--train-crop-size must be a positive integer, got 0$"):
        data(train_crop_size=0)
    with pytest.raises(UserError, match=r"^--crop-scale must be in \(0, 1\], got 0.0$"):
        data(crop_scale=0.0)
    assert data(crop_scale=1.0).crop_scale == 1.0


def test_model_checks_the_arch_and_its_kernel_sizes_without_allocating():
    assert ModelSettings(arch="eca_resnet50", ksize="3557").ksize == "3557"
    with pytest.raises(UserError, match="unknown architecture 'eca_resnet5'. Did you mean eca_resnet50"):
        ModelSettings(arch="eca_resnet5")
    with pytest.raises(UserError, match="no ECA layer"):
        ModelSettings(arch="resnet50", ksize="3")
    with pytest.raises(UserError, match="eca_mobilenet_v2 takes one kernel size for every block"):
        ModelSettings(arch="eca_mobilenet_v2", ksize="3557")
    with pytest.raises(UserError, match="^--num-classes must be positive, got 0$"):
        ModelSettings(arch="resnet18", num_classes=0)
    assert all(name in ModelSettings.options()[0][1].help for name in list_models())


@pytest.mark.parametrize("kw,message", [
    ({"resume": "a", "pretrained": "b"}, "give one of them"),
    ({"resume": "auto", "evaluate": True}, "--resume auto continues training"),
    ({"resume": "/no/such/file.pth.tar"}, "--resume '/no/such/file.pth.tar': no such file; give the path"),
    ({"pretrained": "/no/such/w.pth"}, "--pretrained '/no/such/w.pth': no such file"),
    ({"pretrained": True}, "--pretrained needs the path of a checkpoint"),
    ({"evaluate": True}, "-e evaluates a checkpoint"),
    ({"seed": 2 ** 32}, "--seed must be in [0, 2**32), got 4294967296"),
])
def test_run_settings_refuse_what_cannot_run(kw, message):
    with pytest.raises(UserError) as info:
        RunSettings(**kw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_run_settings_name_a_folder_given_as_checkpoint_and_the_weights_source(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        RunSettings(resume=str(tmp_path))
    weights = tmp_path / "w.pth.tar"
    weights.write_bytes(b"x")
    assert RunSettings(resume=str(weights)).weights_source == str(weights)
    assert RunSettings(pretrained=str(weights)).weights_source == str(weights)
    assert RunSettings(resume="auto").weights_source == "auto" and RunSettings().weights_source == ""


@pytest.mark.parametrize("kw,message", [
    ({"world_size": 2, "rank": 2}, "--rank 2 is not below --world-size 2"),
    ({"world_size": 1, "rank": 1}, "--rank 1 needs --world-size above it"),
    ({"world_size": 2}, "--world-size 2 without torchrun needs --rank for this process (0 .. 1)"),
    ({"world_size": 2, "rank": 0}, "needs a rendezvous: --dist-url tcp://HOST:PORT"),
    ({"dist_timeout": 0.0}, "--dist-timeout must be > 0, got 0.0"),
    ({"gpu": -1}, "--gpu must be >= 0, got -1"),
])
def test_launch_settings_of_a_manual_launch(kw, message, monkeypatch):
    for name in ("WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError) as info:
        LaunchSettings(**kw)
    assert message in str(info.value)


def test_launch_settings_under_torchrun_and_with_a_rendezvous(monkeypatch):
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    settings = LaunchSettings(world_size=2, rank=1, dist_url="tcp://127.0.0.1:1234")
    assert settings.manual
    monkeypatch.setenv("WORLD_SIZE", "4")  # torchrun's environment wins over the manual flags
    assert not LaunchSettings(world_size=2, rank=0).manual
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert LaunchSettings(world_size=2, rank=0).manual  # env:// with MASTER_ADDR and MASTER_PORT set


@pytest.mark.parametrize("cls,kw,message", [
    (OutputSettings, {"action": "a/b"}, "--action must be a plain name"),
    (OutputSettings, {"action": ".."}, "--action must be a plain name"),
    (OptimSettings, {"lr": -1.0}, "--lr must be >= 0, got -1.0"),
    (OptimSettings, {"momentum": 1.0}, "--momentum must be in [0, 1), got 1.0"),
    (OptimSettings, {"clip_grad_norm": 0.0}, "--clip-grad-norm must be > 0, got 0.0"),
    (ScheduleSettings, {"lr_step": 0}, "--lr-step must be a positive integer, got 0"),
    (ScheduleSettings, {"lr_gamma": 0.0}, "--lr-gamma must be > 0, got 0.0"),
    (ScheduleSettings, {"warmup_epochs": -1.0}, "--warmup-epochs must be >= 0, got -1.0"),
    (LoopSettings, {"epochs": 0}, "--epochs must be a positive integer, got 0"),
    (LoopSettings, {"label_smoothing": float("nan")}, "--label-smoothing must be a finite number"),
    (LoopSettings, {"skip_nonfinite": -1}, "--skip-nonfinite must be >= 0, got -1"),
    (MixSettings, {"mixup_alpha": -0.5}, "--mixup-alpha must be >= 0, got -0.5"),
    (EmaSettings, {"model_ema_decay": 0.0}, "--model-ema-decay must be in (0, 1), got 0.0"),
    (EmaSettings, {"model_ema_steps": 0}, "--model-ema-steps must be >= 1, got 0"),
    (AugmentSettings, {"random_erase": 1.5}, "--random-erase must be in [0, 1], got 1.5"),
    (AugmentSettings, {"augmix_severity": 0}, "--augmix-severity must be >= 1, got 0"),
])
def test_each_value_check_names_its_flag(cls, kw, message):
    with pytest.raises(UserError) as info:
        cls(**kw)
    assert str(info.value) == message or str(info.value).startswith(message)


def test_section_properties():
    assert MixSettings(0.2, 0.0).enabled and MixSettings(0.0, 1.0).enabled and not MixSettings().enabled
    assert NumericsSettings().device == "cpu" and NumericsSettings().eca_impl == "auto"
    assert EmaSettings().model_ema_decay == 0.99998 and EmaSettings().model_ema_steps == 32
