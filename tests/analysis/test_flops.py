"""utils/analysis/flops.py: the official 1024-based units, thop's counts and what changes them. The released models'
numbers at 224 px (the paper's columns, a promise of the project) are counted for real through paras_flops.py in
tests/test_paras_flops.py."""
import pytest

from tests.helpers import meta_params_macs
from utils.analysis.flops import count_params_macs, format_1024


@pytest.mark.parametrize("value,text", [(4139363328, "3.86G"), (25557112, "24.37M"), (3504903, "3.34M"),
                                        (2048, "2.00K"), (1023, "1023.00"), (1024 ** 3, "1.00G")])
def test_the_official_units(value, text):
    assert format_1024(value) == text


def test_kernel_sizes_classes_and_input_size_change_the_count():
    small = count_params_macs("eca_resnet18", k_size="3333", input_size=64, num_classes=10)
    assert small["params"] == 11689556 - (3 + 5 + 7 + 7) * 2 + 3 * 8 - (1000 - 10) * 513
    assert small["macs"] < count_params_macs("eca_resnet18", input_size=96, num_classes=10)["macs"]


@pytest.mark.parametrize("arch,k_size", [("eca_resnet18", "3,5,7,9"), ("se_var3_resnet18", None),
                                         ("cbam_resnet50", None), ("se_mobilenet_v2", None), ("eca_ns_resnet50", 3)])
def test_counts_on_the_meta_device_equal_the_real_ones(arch, k_size):
    """What lets the other tests count every model at 224 px on the meta device (tests/helpers.py)."""
    assert meta_params_macs(arch, k_size, input_size=32, num_classes=10) == \
        count_params_macs(arch, k_size, input_size=32, num_classes=10)


def test_without_thop_the_error_says_how_to_install_it(monkeypatch):
    import builtins

    from utils.errors import UserError

    real = builtins.__import__

    def no_thop(name, *args, **kwargs):
        if name == "thop":
            raise ImportError("No module named 'thop'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_thop)
    with pytest.raises(UserError, match="counting FLOPs needs thop: pip install thop"):
        count_params_macs("resnet18", input_size=32)
