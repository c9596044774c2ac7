"""utils/config/resolve.py: every automatic and checkpoint-derived value settled once, into a frozen RunConfig."""
import dataclasses

import pytest
import torch

import light_main
import main
from models import create_model
from tests.helpers import make_image_folder
from utils.running.distributed import DistContext
from utils.errors import UserError
from utils.config.resolve import parse_command_line, resolve


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), n_classes=3, train_per_class=2, val_per_class=1)


def config_of(argv, recipe=main.RECIPE, builtin=main.BUILTIN):
    args, explicit = parse_command_line(argv, recipe, builtin, "")
    classes = None if args.data.dummy else sorted(["class0", "class1", "class2"])
    return resolve(args, explicit, DistContext(), (classes, 1000))  # enough images for the default batch


def test_cpu_defaults_are_the_official_numerics_and_pipeline(data):
    config, weights = config_of(["-a", "eca_resnet18", data])
    assert weights is None
    assert (config.numerics.amp, config.numerics.channels_last, config.numerics.compile) == ("none", False, False)
    assert (config.numerics.eca_impl, config.data.data_backend) == ("conv", "pil")
    assert config.model.num_classes == 3 and config.run.class_names == ("class0", "class1", "class2")
    assert config.data.per_process_batch == 256 and config.data.workers >= 0
    assert isinstance(config.run.seed, int) and config.output.run_dir.endswith("eca_resnet18")


def test_auto_eca_form_is_the_reference_also_compiled_and_official_numerics_override(data):
    """The fused block end has not been measured on a GPU: auto keeps the reference layer under --compile
    too; the fused form stays available by name."""
    config, _ = config_of(["-a", "eca_resnet18", "--compile", data])
    assert config.numerics.compile and config.numerics.eca_impl == "conv"
    config, _ = config_of(["-a", "eca_resnet18", "--compile", "--eca-impl", "fused", data])
    assert config.numerics.eca_impl == "fused"
    config, _ = config_of(["-a", "eca_resnet18", "--compile", "--amp", "bf16", "--official-numerics", data])
    assert (config.numerics.amp, config.numerics.compile, config.numerics.eca_impl) == ("none", False, "conv")


def test_the_recipe_and_the_configuration_record(data):
    config, _ = config_of(["--seed", "5", "--action", "try", data], light_main.RECIPE, light_main.BUILTIN)
    flat = config.as_dict()
    assert (flat["arch"], flat["lr"], flat["weight_decay"], flat["lr_schedule"], flat["seed"]) == \
        ("eca_mobilenet_v2", 0.045, 4e-5, "exp", 5)
    assert (flat["amp"], flat["data_backend"], flat["per_process_batch"], flat["action"]) == ("none", "pil", 96, "try")
    assert config.output.run_dir.endswith("eca_mobilenet_v2_try")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.run.seed = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.arch = "resnet50"


def test_arch_kernels_classes_and_seed_come_from_the_checkpoint(data, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w.pth.tar"
    state = create_model("eca_resnet34", k_size="3335", num_classes=7).state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "args": {"seed": 1234}}, path)
    config, weights = config_of(["-e", "--resume", str(path), data])
    assert (config.model.arch, config.model.k_size, config.model.num_classes) == ("eca_resnet34", [3, 3, 3, 5], 7)
    assert config.run.seed == 1234 and weights.path == str(path)
    with pytest.raises(UserError, match="disagrees"):
        config_of(["-e", "--resume", str(path), "--ksize", "3357", data])


def test_bad_values_are_user_errors(data):
    with pytest.raises(UserError, match="global batch"):
        args, explicit = parse_command_line(["-b", "3", data], main.RECIPE, main.BUILTIN, "")
        resolve(args, explicit, DistContext(world_size=2), (["class0", "class1", "class2"], 6))
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        config_of(["--amp", "fp16", data])


def test_dataparallel_and_sync_bn_are_not_compiled(data, capsys):
    """On CUDA training compiles by default, except under DataParallel (a compiled DataParallel gains
    nothing) or --sync-bn (its collectives break the graph); a line says why."""
    from utils.config import resolve as r

    cuda = torch.device("cuda")
    plain, _ = parse_command_line(["--amp", "bf16", data], main.RECIPE, main.BUILTIN, "")
    numerics = r._numerics(plain, cuda, r._graph_breaking(plain, data_parallel=False))
    assert numerics.compile and numerics.channels_last and numerics.eca_impl == "conv"
    for flags, data_parallel in ((["--sync-bn"], False), ([], True)):
        args, _ = parse_command_line(["--amp", "bf16", *flags, data], main.RECIPE, main.BUILTIN, "")
        numerics = r._numerics(args, cuda, r._graph_breaking(args, data_parallel))
        assert not numerics.compile and numerics.eca_impl == "conv"
        assert "not compiling" in capsys.readouterr().out
