"""Which kernel size every ECA layer gets under each convention in use, and the --ksize spelling that builds it.

The conventions disagree (a frequent question on the official repository):
- released: the sizes of the published checkpoints (ECA-ResNet-50: 3,5,5,7; ECA-MobileNetV2: 1 below 96
  channels, else 3);
- ψ(C): the paper's formula (§3.3, γ = 2, b = 1) on the channels the layer sees, C (for a bottleneck, the
  expanded width 4 x planes): `--ksize adaptive`;
- ψ(planes): the same formula on a ResNet stage's base width (64, 128, 256, 512), the reading that gives
  3,5,5,5 for ECA-ResNet-50;
- timm: ψ(C) with the kernel at least 3 (timm's EcaModule), which gives 5,5,5,7 for ResNet-50.
Everything is built on the meta device: no memory, no weights.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from models import create_model, format_ksize, model_family
from models.attention import ECA, ECANonShared
from models.ksize import adaptive_kernel_size
from models.resnet import STAGE_WIDTHS

CONVENTIONS = ("released", "psi_channels", "psi_planes", "timm")
TITLES = {"released": "released", "psi_channels": "ψ(C)", "psi_planes": "ψ(planes)", "timm": "timm"}


def timm_kernel_size(channels: int) -> int:
    return max(3, adaptive_kernel_size(channels))


@dataclass(frozen=True)
class LayerKernels:
    name: str
    channels: int
    planes: Optional[int]     # the ResNet stage's base width; None for MobileNetV2
    kernels: Dict[str, int]   # convention -> k


def _stage(name: str) -> Optional[int]:
    head = name.split(".", 1)[0]
    return int(head[len("layer"):]) - 1 if head.startswith("layer") and head[len("layer"):].isdigit() else None


def layer_kernels(arch: str) -> List[LayerKernels]:
    """One row per ECA layer of `arch` (as released), in model order."""
    with torch.device("meta"):
        model = create_model(arch)
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, (ECA, ECANonShared)):
            continue
        stage = _stage(name)
        planes = STAGE_WIDTHS[stage] if stage is not None else None
        kernels = {"released": module.k_size, "psi_channels": adaptive_kernel_size(module.channels),
                   "timm": timm_kernel_size(module.channels)}
        if planes is not None:
            kernels["psi_planes"] = adaptive_kernel_size(planes)
        rows.append(LayerKernels(name, module.channels, planes, kernels))
    return rows


def ksize_spelling(arch: str, rows: List[LayerKernels], convention: str) -> str:
    """The --ksize values that build `convention`'s kernels for `arch` (joined by "or"), or a note if none does."""
    wanted = [row.kernels.get(convention) for row in rows]
    if None in wanted:
        return "-"
    candidates = [None, "adaptive", *sorted(set(wanted))]  # the default, the formula, one size everywhere
    if model_family(arch).ksize_values > 1:  # one size per stage
        per_stage = {}
        for row, k in zip(rows, wanted):
            per_stage.setdefault(_stage(row.name), set()).add(k)
        if all(len(ks) == 1 for ks in per_stage.values()) and len(per_stage) == model_family(arch).ksize_values:
            candidates.append(format_ksize([next(iter(per_stage[s])) for s in sorted(per_stage)]))
    spellings = []
    for candidate in dict.fromkeys(candidates):
        with torch.device("meta"):
            built = create_model(arch, k_size=candidate)
        if [m.k_size for m in built.modules() if isinstance(m, (ECA, ECANonShared))] == wanted:
            spellings.append("(default)" if candidate is None else str(candidate))
    return " or ".join(spellings) if spellings else "not expressible with --ksize"


def kernel_table(arch: str) -> str:
    """A Markdown table of every ECA layer's kernel under each convention, and the --ksize spellings."""
    rows = layer_kernels(arch)
    if not rows:
        return f"{arch} has no ECA layer"
    conventions = [c for c in CONVENTIONS if all(c in row.kernels for row in rows)]
    lines = [f"| layer | channels C | planes | {' | '.join(TITLES[c] for c in conventions)} |",
             "|---|---|---|" + "---|" * len(conventions)]
    for row in rows:
        planes = "-" if row.planes is None else str(row.planes)
        lines.append(f"| {row.name} | {row.channels} | {planes} | "
                     + " | ".join(str(row.kernels[c]) for c in conventions) + " |")
    lines.append("| --ksize | | | " + " | ".join(ksize_spelling(arch, rows, c) for c in conventions) + " |")
    return "\n".join(lines)
