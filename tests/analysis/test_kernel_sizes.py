"""utils/analysis/kernel_sizes.py: every ECA layer's kernel under each convention, and the --ksize that builds it."""
from utils.analysis.kernel_sizes import kernel_table, layer_kernels, timm_kernel_size


def test_resnet50_conventions_disagree_as_documented():
    rows = layer_kernels("eca_resnet50")
    assert len(rows) == 16 and rows[0].name == "layer1.0.eca" and rows[0].channels == 256 and rows[0].planes == 64
    per_stage = {}
    for row in rows:
        per_stage.setdefault(row.name.split(".")[0], row.kernels)
    stages = [per_stage[f"layer{s}"] for s in range(1, 5)]
    assert [k["released"] for k in stages] == [3, 5, 5, 7]      # the published checkpoint
    assert [k["psi_planes"] for k in stages] == [3, 5, 5, 5]    # ψ of 64, 128, 256, 512
    assert [k["psi_channels"] for k in stages] == [5, 5, 5, 7]  # ψ of 256 .. 2048, what --ksize adaptive builds
    assert [k["timm"] for k in stages] == [5, 5, 5, 7]


def test_spellings_rebuild_each_convention():
    table = kernel_table("eca_resnet50").splitlines()
    spellings = table[-1].split("|")[4:-1]
    assert [s.strip() for s in spellings] == ["(default) or 3557", "adaptive or 5557", "3555", "adaptive or 5557"]
    mobilenet = kernel_table("eca_mobilenet_v2").splitlines()
    assert "planes" in mobilenet[0] and "ψ(planes)" not in mobilenet[0]  # no stage widths in MobileNetV2
    first = mobilenet[2].split("|")
    assert first[1].strip() == "features.1.conv.3" and first[2].strip() == "16" and first[4].strip() == "1"


def test_timm_floors_the_kernel_at_three_and_models_without_eca_say_so():
    assert timm_kernel_size(2) == 3 and timm_kernel_size(2048) == 7
    assert kernel_table("resnet50") == "resnet50 has no ECA layer"
