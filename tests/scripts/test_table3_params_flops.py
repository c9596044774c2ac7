"""scripts/table3_params_flops.py: the paper's Table 3 Param and FLOPs columns at 224 px, and Table 1's models with
what each attention layer adds to ResNet-50. The counts come from thop on the meta device (the same numbers,
tests/analysis/test_flops.py; the real thop run of the released models is there too)."""
import pytest

from scripts import table3_params_flops as table3
from tests.helpers import meta_params_macs

WIDTHS = [w * 4 for w, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)) for _ in range(blocks)]


@pytest.fixture()
def counted(monkeypatch):
    monkeypatch.setattr(table3, "count_params_macs", meta_params_macs)


def test_table3_has_the_papers_columns(counted, capsys):
    assert table3.main(["--table", "3"]) == 0
    out = capsys.readouterr().out
    for row in ("| ResNet-50 | SENet | 26.77M |", "| ResNet-101 | ECA-Net | 42.49M | 7.33G |",
                "| ResNet-152 | SENet | 63.68M |", "| MobileNetV2 | SENet | 3.40M |", "| ResNet-152 | CBAM | – | – |",
                "| ResNet-50 | ECA-Net | 24.37M | 3.86G |", "| MobileNetV2 | ECA-Net | 3.34M | 312.87M |"):
        assert row in out, row
    assert "Paper Table 1" not in out


def test_table1_rows_and_what_each_layer_adds(counted, capsys):
    """By default Table 1 follows Table 3: the ResNet-50 attention variants, with the parameters each adds over
    resnet50 (the paper's #Param column summed over the 16 blocks of widths C)."""
    assert table3.main([]) == 0
    out = capsys.readouterr().out
    assert out.index("| backbone | method |") < out.index("Paper Table 1")
    table1 = out[out.index("Paper Table 1"):].splitlines()
    assert table1[0] == "Paper Table 1 models (ResNet-50), input 224x224; added = over resnet50, exact counts:"
    # Cells: method, arch, --ksize, Param, FLOPs, params added, MACs added.
    cells = [line.strip("| ").split(" | ") for line in table1 if line.startswith("| ") and "| method |" not in line]
    rows = {row[1]: row for row in cells}
    assert list(rows) == ["resnet50", "se_resnet50", "se_var1_resnet50", "se_var2_resnet50", "se_var3_resnet50",
                          "eca_ns_resnet50", "eca_resnet50"]
    added = {arch: int(row[5].replace(",", "")) for arch, row in rows.items()}
    assert added == {"resnet50": 0, "se_resnet50": sum(2 * c * c // 16 for c in WIDTHS), "se_var1_resnet50": 0,
                     "se_var2_resnet50": sum(WIDTHS), "se_var3_resnet50": sum(c * c for c in WIDTHS),
                     "eca_ns_resnet50": 3 * sum(WIDTHS), "eca_resnet50": 3 * len(WIDTHS)}
    assert rows["eca_resnet50"][2] == rows["eca_ns_resnet50"][2] == "3"  # Table 1 compares at k = 3
    assert rows["resnet50"][3] == "24.37M" and rows["se_resnet50"][3] == "26.77M"
    # thop: Var3's C x C multiply-adds are counted on top of the pools that Var1 and Var2 share.
    macs = {arch: int(row[6].replace(",", "")) for arch, row in rows.items()}
    assert macs["se_var2_resnet50"] == macs["se_var1_resnet50"] > 0
    assert macs["se_var3_resnet50"] - macs["se_var1_resnet50"] == sum(c * c for c in WIDTHS)


def test_the_input_size_is_checked_as_paras_flops_checks_it(counted, capsys):
    from utils.errors import UserError

    with pytest.raises(UserError, match="--input-size 8 is too small"):
        table3.main(["--input-size", "8"])
    assert table3.main(["--table", "1", "--input-size", "64"]) == 0
    assert "input 64x64" in capsys.readouterr().out
