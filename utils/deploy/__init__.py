"""Deployment: export and portable weights.

export.py turns any registered model or checkpoint into an ONNX or TorchScript file and proves, before the
file is written, that it computes the model's logits (onnxruntime, or torch.jit.load in a fresh process).
safetensors_io.py converts checkpoints to `.safetensors` (tensors plus a small metadata header, no pickle)
and back to the official `.pth.tar` dict.

Their optional packages (onnx, onnxruntime, onnxscript, safetensors: requirements-export.txt) are imported
inside the functions that need them, never by training or evaluation.
"""
