"""Export a model to ONNX or TorchScript, and verify the file before it is written.

Verification, not assumption: the exported bytes are run (ONNX in onnxruntime's CPUExecutionProvider,
TorchScript through `torch.jit.load` in a fresh, isolated Python process that cannot import this project)
on real images, and their logits are compared with PyTorch eager's on the same batch. A file is written
only when every checked batch agrees:

    max |exported - eager| <= 1e-4 * max(1, max |eager logit|)

float32 kernels that sum in another order differ by about 1e-7 relative to the logits; a wrong graph (the
official eca_layer's squeeze/transpose gate is known to become a constant or batch-1-only graph in some
exporters and runtimes) differs by the logits' own size, so the bound separates the two by three orders of
magnitude while staying meaningful for large, trained logits.

The exported model is always the reference ECA form (`conv`: pooled channels through a Conv1d), taken on a
copy of the model: the same weights and the same function as the `shifted` and `fused` forms, and the one
every exporter handles.

onnx, onnxruntime and onnxscript (torch's ONNX exporter) are optional: imported here, inside functions, so
training and evaluation never load them.
"""
import contextlib
import copy
import importlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from models.safetensors_file import INSTALL  # the optional packages' one install line

from ..errors import RunError, UserError, one_line

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 18          # torch's dynamo ONNX exporter emits opset 18 and later
VERIFY_BATCHES = (1, 8)     # the batches a --dynamic-batch file is checked at
RELATIVE_TOLERANCE = 1e-4   # see the module docstring
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ExportError(RunError):
    """The exporter failed, or the exported file does not compute the model's logits (nothing was written)."""


def require(packages: Sequence[str], purpose: str) -> None:
    """UserError naming the requirements file when any of `packages` cannot be imported."""
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"{purpose} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                        f"installed: {INSTALL}")


def reference_form(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every ECA layer in the reference `conv` form."""
    from models.attention import set_eca_implementation

    return set_eca_implementation(copy.deepcopy(model), "conv").eval()


# ----------------------------------------------------------------------------------------- the model


@dataclass
class Loaded:
    model: nn.Module
    arch: str
    origin: str  # what the weights are, for the report


def load_model(source: str, arch: Optional[str] = None, num_classes: Optional[int] = None) -> Loaded:
    """The model of a checkpoint file (arch, ECA kernel sizes and class count read from its tensors, as `-e`
    does; `arch` overrides), or of a registered model name with random initial weights (seed 0)."""
    from models import WeightsFile, create_model, list_models, load_strict
    from models.weights import CheckpointError

    if not os.path.exists(source) and source in list_models():
        if arch is not None and arch != source:
            raise UserError(f"-a {arch} contradicts the model name {source}: give one")
        torch.manual_seed(0)
        model = create_model(source, num_classes=num_classes if num_classes is not None else 1000)
        return Loaded(model, source, "random initial weights (a model name, not a checkpoint, was given; seed 0)")
    if num_classes is not None:
        raise UserError("--num-classes applies to a model name only: a checkpoint's class count is read from it")
    if not os.path.exists(source):
        raise CheckpointError(f"{source!r} is neither a checkpoint file nor a registered model name: check the path, "
                              f"or give a model name (e.g. eca_resnet50) to export random weights")
    weights = WeightsFile.read(source)
    arch = arch or weights.arch
    if arch is None:
        raise CheckpointError(f"{source}: its tensors match no registered model; pass -a ARCH")
    model = create_model(arch, k_size=weights.kernels(arch), num_classes=weights.num_classes or 1000)
    return Loaded(load_strict(model, weights.state_dict, source), arch, f"the weights of {source}")


# ---------------------------------------------------------------------------------------- the images


def _generated(count: int) -> List["object"]:
    """Deterministic photo-like PIL images: gradients, texture and a bright patch at a varying place."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        h, w = 96 + 8 * i, 128 - 4 * i
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x * (i + 1) + y) % 64 * 4], -1)
        base[(i * 7) % (h // 2):(i * 7) % (h // 2) + h // 3, (i * 11) % (w // 2):(i * 11) % (w // 2) + w // 3] = 255
        pixels = np.clip(base + rng.normal(0, 16, base.shape), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels))
    return images


def _folder_images(folder: str) -> List[str]:
    if not os.path.isdir(folder):
        raise UserError(f"--images {folder}: no such folder; give a folder of JPEG images")
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise UserError(f"--images {folder}: no .jpg/.jpeg/.png files in it (or its sub-folders)")
    return paths


def check_images(folder: Optional[str]) -> None:
    if folder is not None:
        _folder_images(folder)


def sample_images(count: int, size: int, resize: int, folder: Optional[str] = None) -> Tuple[torch.Tensor, str]:
    """`count` images through the project's evaluation transform (resize the short side, center crop,
    normalise): the first files of `folder` in sorted order (repeated if it has fewer), else generated ones.
    Returns the (count, 3, size, size) batch and a description."""
    from utils.data.common import UnreadableImage, decode_pil
    from utils.data.pil import eval_transform

    transform = eval_transform(size, resize)
    if folder is None:
        pictures, what = _generated(count), f"{count} generated images"
    else:
        paths = _folder_images(folder)
        chosen = [paths[i % len(paths)] for i in range(count)]
        try:
            pictures = [decode_pil(path) for path in chosen]
        except UnreadableImage as exc:
            raise UserError(f"--images {folder}: an image cannot be decoded ({exc})") from None
        what = f"{min(count, len(paths))} images of {folder}" + (
            f" (repeated to fill {count})" if len(paths) < count else "")
    return torch.stack([transform(p) for p in pictures]), f"{what}, eval transform (resize {resize}, crop {size})"


def default_resize(size: int) -> int:
    """The official evaluation's ratio: resize 256 for a 224 crop."""
    return int(round(size * 256 / 224))


# ----------------------------------------------------------------------------------------- exporting


@contextlib.contextmanager
def _quiet():
    """The exporters' progress lines and deprecation warnings, kept out of the report; returned on failure."""
    log = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log):
        warnings.simplefilter("ignore")
        yield log


def _failed(what: str, exc: BaseException) -> ExportError:
    return ExportError(f"{what} failed ({type(exc).__name__}: {one_line(exc)[:300]})")


def export_onnx(model: nn.Module, size: int, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False,
                batch: int = 1) -> bytes:
    """The serialised ONNX model of `model` (already in reference form) with torch's dynamo exporter. A dynamic
    batch is traced with an example of batch 2: torch.export specialises a dimension of size 1."""
    example = torch.randn(max(batch, 2) if dynamic_batch else batch, 3, size, size)
    shapes = {"dynamic_shapes": ({0: torch.export.Dim("batch", min=1)},)} if dynamic_batch else {}
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, input_names=["images"],
                                        output_names=["logits"], **shapes)
        return program.model_proto.SerializeToString()
    except Exception as exc:
        raise _failed(f"ONNX export (opset {opset})", exc) from exc


def export_torchscript(model: nn.Module, size: int, batch: int = 1) -> bytes:
    """The serialised TorchScript module of `model` (already in reference form), traced: the scripted compiler
    cannot read the blocks' attention lookup, and tracing records exactly the eval-mode computation."""
    example = torch.randn(batch, 3, size, size)
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
        return buffer.getvalue()
    except Exception as exc:
        raise _failed("TorchScript tracing", exc) from exc


# ------------------------------------------------------------------------------------------ verifying


@dataclass(frozen=True)
class Agreement:
    fmt: str
    batch: int
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def line(self) -> str:
        return (f"{self.fmt} batch {self.batch}: max |logit diff| {self.max_abs_diff:.2e} (tolerance "
                f"{self.tolerance:.1e}) {'ok' if self.ok else 'DISAGREES'}")


def tolerance(reference: torch.Tensor) -> float:
    return RELATIVE_TOLERANCE * max(1.0, float(reference.abs().max()))


def agreement(fmt: str, exported, reference: torch.Tensor) -> Agreement:
    exported = torch.as_tensor(np.asarray(exported)) if not isinstance(exported, torch.Tensor) else exported
    if tuple(exported.shape) != tuple(reference.shape):
        return Agreement(fmt, reference.shape[0], float("inf"), tolerance(reference))
    diff = float((exported.double() - reference.double()).abs().max())
    return Agreement(fmt, reference.shape[0], diff if np.isfinite(diff) else float("inf"), tolerance(reference))


def eager_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images)


def onnx_session(data: bytes, threads: Optional[int] = None):
    """An onnxruntime CPU session over the model bytes, with as many threads as torch uses (a fair race)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads or torch.get_num_threads()
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise _failed("loading the exported ONNX model in onnxruntime", exc) from exc


def run_session(session, images: torch.Tensor) -> np.ndarray:
    try:
        return session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    except Exception as exc:
        raise _failed(f"running the ONNX model in onnxruntime on a batch of {images.shape[0]}", exc) from exc


def check_onnx(session, model: nn.Module, images: torch.Tensor, batches: Sequence[int]) -> List[Agreement]:
    return [agreement("onnx", run_session(session, images[:b]), eager_logits(model, images[:b])) for b in batches]


# Runs in a fresh interpreter started with -I (no PYTHONPATH, no current folder on the path): the file must
# load and run with torch alone, without this project's code.
_TORCHSCRIPT_CHILD = """
import sys, torch
module = torch.jit.load(sys.argv[1], map_location="cpu").eval()
with torch.no_grad():
    outputs = [module(x) for x in torch.load(sys.argv[2], weights_only=True)]
torch.save(outputs, sys.argv[3])
"""


def check_torchscript(data: bytes, model: nn.Module, images: torch.Tensor, batches: Sequence[int],
                      timeout: float = 600) -> List[Agreement]:
    """torch.jit.load of the bytes in a fresh process, run on the batches; compared with eager here."""
    with tempfile.TemporaryDirectory(prefix="eca-export-") as folder:
        paths = [os.path.join(folder, name) for name in ("model.pt", "inputs.pt", "outputs.pt")]
        with open(paths[0], "wb") as f:
            f.write(data)
        torch.save([images[:b].clone() for b in batches], paths[1])
        try:
            done = subprocess.run([sys.executable, "-I", "-c", _TORCHSCRIPT_CHILD, *paths], cwd=folder,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ExportError(f"the TorchScript check in a fresh process took more than {timeout:.0f} s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ExportError(f"the exported TorchScript file does not load and run in a fresh process (exit "
                              f"{done.returncode}: {last[:300]})")
        outputs = torch.load(paths[2], weights_only=True)
    return [agreement("torchscript", out, eager_logits(model, images[:b])) for out, b in zip(outputs, batches)]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocations, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class Speed:
    batch: int
    repeats: int
    onnxruntime_images_per_s: float
    eager_images_per_s: float

    @property
    def ratio(self) -> float:
        return self.onnxruntime_images_per_s / self.eager_images_per_s

    def line(self) -> str:
        return (f"speed, batch {self.batch}, median of {self.repeats}, {torch.get_num_threads()} threads: "
                f"onnxruntime CPU {self.onnxruntime_images_per_s:.1f} img/s, PyTorch eager "
                f"{self.eager_images_per_s:.1f} img/s: ratio {self.ratio:.2f}")


def measure_speed(session, model: nn.Module, images: torch.Tensor, repeats: int = 5) -> Speed:
    """onnxruntime vs eager on the same CPU batch: one run each of `repeats` timed calls, their medians."""
    batch = images.shape[0]
    feed = {session.get_inputs()[0].name: images.numpy()}
    ort_s = median_seconds(lambda: session.run(None, feed), repeats)
    eager_s = median_seconds(lambda: eager_logits(model, images), repeats)
    return Speed(batch, repeats, batch / ort_s, batch / eager_s)


# ------------------------------------------------------------------------------------------- together


@dataclass
class ExportReport:
    fmt: str
    path: str
    size_bytes: int
    images: str
    checks: List[Agreement] = field(default_factory=list)
    speed: Optional[Speed] = None


def verified_batches(dynamic_batch: bool, batch: int) -> List[int]:
    return sorted({batch, *VERIFY_BATCHES}) if dynamic_batch else [batch]


@dataclass(frozen=True)
class ExportSettings:
    """What to write and how to check it (scripts/export.py's flags)."""
    fmt: str
    size: int = 224                 # square input side
    resize: Optional[int] = None    # short side before the check images' center crop (default_resize)
    images: Optional[str] = None    # a folder of check images; None: generated ones
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = False
    batch: int = 1                  # the exported batch without dynamic_batch
    repeats: int = 5                # timed runs of the speed line


def export_model(model: nn.Module, out: str, settings: ExportSettings,
                 say: Callable[[str], None] = lambda line: None) -> ExportReport:
    """Export `model` (any ECA form: a reference-form copy is exported) to `out`, verify the bytes at the
    batches `verified_batches` gives, then write them atomically. ExportError if the exporter fails or the
    file disagrees with eager (nothing is written then)."""
    from ..running.files import atomic_write

    fmt = settings.fmt
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        require(ONNX_PACKAGES, "ONNX export and its check")
    model = reference_form(model)
    batches = verified_batches(settings.dynamic_batch, settings.batch)
    pixels, described = sample_images(max(batches), settings.size, settings.resize or default_resize(settings.size),
                                      settings.images)
    say(f"verifying on {described}, batch {' and '.join(map(str, batches))}")
    if fmt == "onnx":
        data = export_onnx(model, settings.size, settings.opset, settings.dynamic_batch, settings.batch)
        session = onnx_session(data)
        checks = check_onnx(session, model, pixels, batches)
    else:
        data = export_torchscript(model, settings.size, settings.batch)
        checks, session = check_torchscript(data, model, pixels, batches), None
    for check in checks:
        say(check.line())
    bad = [c for c in checks if not c.ok]
    if bad:
        raise ExportError(f"the exported {fmt} model does not compute the model's logits ({bad[0].line()}); "
                          f"{out} was not written")
    speed = None
    if session is not None:
        timed = pixels[:max(batches)] if settings.dynamic_batch else pixels[:settings.batch]
        speed = measure_speed(session, model, timed, settings.repeats)
        say(speed.line())
    with atomic_write(out) as f:
        f.write(data)
    return ExportReport(fmt, out, len(data), described, checks, speed)
