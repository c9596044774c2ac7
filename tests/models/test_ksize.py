"""Kernel-size rules: the paper's ψ(C) and every accepted and rejected k_size form."""
import pytest

from models import adaptive_kernel_size, create_model, parse_ksize


@pytest.mark.parametrize("channels,k", [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_adaptive_kernel_size_values(channels, k):
    assert adaptive_kernel_size(channels) == k


@pytest.mark.parametrize("value,expected", [
    ("3557", [3, 5, 5, 7]), ("3,5,5,7", [3, 5, 5, 7]), ([3, 5, 5, 7], [3, 5, 5, 7]), ((3, 5, 5, 7), [3, 5, 5, 7]),
    (3, [3, 3, 3, 3]), ("5", [5, 5, 5, 5]), ("3,5,5,11", [3, 5, 5, 11]), (" 3557 ", [3, 5, 5, 7]),
    ("adaptive", "adaptive"), ("ADAPTIVE", "adaptive"), (None, None),
])
def test_accepted_forms(value, expected):
    assert parse_ksize(value) == expected


@pytest.mark.parametrize("value,message", [
    ("3456", "odd"), ("0", "odd"), (-3, "odd"), ([3, 5, 5, 8], "odd"), ("355", "got 3 kernel sizes"),
    ("35577", "got 5"), ([3, 5], "got 2"), ("3x5", "not a list of integers"), ("", "not a list"),
    ("3,,5", "not a list"), ([3, "5", 5, 7], "every entry must be an int"), (True, "invalid"), (3.0, "float"),
])
def test_rejected_forms(value, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_ksize(value)
    assert repr(value) in str(info.value)


def test_adaptive_resnet_kernels_follow_channels():
    assert create_model("eca_resnet18", k_size="adaptive").k_size == [3, 5, 5, 5]
    assert create_model("eca_resnet50", k_size="adaptive").k_size == [5, 5, 5, 7]


def test_mobilenet_accepts_single_int_and_adaptive():
    assert set(create_model("eca_mobilenet_v2", k_size=5).k_size) == {5}
    assert create_model("eca_mobilenet_v2", k_size="adaptive").k_size[-1] == 5  # 320 channels -> ψ = 5
