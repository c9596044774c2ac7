"""Data: the dataset checks that run before any work, the built-in demo dataset, and the input pipelines.

An input pipeline (`pil`, `tensor` or `gpu`, one module each, registered in PIPELINES) owns its loaders, its
position in the data and its device stage (pipeline.py); `build_pipeline` picks it, once, from the run's
resolved configuration. The loops only iterate the DeviceBatches it yields.
"""
from . import gpu, pil, tensor
from .common import DeviceBatch, HostBatch
from .device_stage import DeviceStage
from .pipeline import LoaderPipeline, PipelineRun

# Backend name -> pipeline class. A new pipeline is one module with a LoaderPipeline subclass (or any class
# offering its methods) and one entry here.
PIPELINES = {"pil": pil.Pipeline, "tensor": tensor.Pipeline, "gpu": gpu.Pipeline}


def make_stage(backend: str, device, channels_last: bool) -> DeviceStage:
    """The device stage of pipeline `backend` alone (benchmarks and checks that feed it their own batches)."""
    cls = PIPELINES[backend]
    return DeviceStage(cls.Stage(device, channels_last), device, ahead=cls.prepares_ahead)


def build_pipeline(settings, augment, run: PipelineRun, need_train: bool) -> LoaderPipeline:
    """The configured input pipeline (settings.data_backend, resolved) for the process `run` describes."""
    return PIPELINES[settings.data_backend](settings, augment, run, need_train)


__all__ = ["PIPELINES", "build_pipeline", "make_stage", "DeviceBatch", "HostBatch", "LoaderPipeline", "PipelineRun"]
