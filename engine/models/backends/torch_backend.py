"""Optional: user PyTorch models (``.pth`` / ``.safetensors``) through spandrel (the ``torch`` extra).

Only used for files the user drops into ``paths.user_models_dir()`` (listed as ``user:<stem>``).
spandrel identifies the architecture from the state dict; ``.pth`` files are read with
``torch.load(weights_only=True)`` (never an unsafe pickle), ``.safetensors`` with safetensors.
Not tested in the core venv (no torch there); without the extra it raises one clear line.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.errors import EnhanceError, OutOfMemory
from engine.models.backends import prepost
from engine.models.catalog import ModelSpec


def _imports():
    try:
        import spandrel
        import torch
    except Exception:  # noqa: BLE001 - any import failure means: extra not (properly) installed
        raise EnhanceError("user PyTorch models need the torch extra: pip install 'enhancelayer[torch]'") from None
    return torch, spandrel


def _state_dict(path: Path, torch):
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("params_ema", "params", "state_dict", "model"):   # common training wrappers
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


class TorchModel:
    def __init__(self, spec: ModelSpec, path: Path, device: str) -> None:
        torch, spandrel = _imports()
        self._torch = torch
        try:
            sd = _state_dict(path, torch)
        except Exception as e:  # noqa: BLE001 - corrupt file, unsafe pickle refused by weights_only, ...
            raise EnhanceError(f"cannot read {path.name} as PyTorch weights (weights_only): "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        try:
            desc = spandrel.ModelLoader().load_from_state_dict(sd)
        except Exception as e:  # noqa: BLE001
            raise EnhanceError(f"spandrel cannot identify {path.name} as a known image model: "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.input_channels != 3:
            raise EnhanceError(f"{path.name} is not a 3-channel image-to-image model")
        if device in ("auto", "cuda") and torch.cuda.is_available():
            dev = "cuda"
        elif device in ("auto", "cpu"):
            dev = "cpu"
        else:
            raise EnhanceError(f"device '{device}' is not available for torch models (use auto, cpu or cuda)")
        self.model = desc.to(dev).eval()
        self.device = dev
        pad = max(16, int(getattr(desc.size_requirements, "multiple_of", 1) or 1))
        align = int(getattr(desc.size_requirements, "multiple_of", 1) or 1)
        self.spec = replace(spec, scale=int(desc.scale), native_scale=int(desc.scale), prepad=pad, align=align,
                            tile_invariant=desc.tiling.name != "INTERNAL")

    def net(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        try:
            with torch.inference_mode():
                t = torch.from_numpy(x).to(self.device)
                return self.model(t).float().cpu().numpy()
        except RuntimeError as e:
            if "out of memory" in str(e).lower():
                raise OutOfMemory(f"out of memory on a {x.shape[3]}x{x.shape[2]} tile ({self.device})") from None
            raise

    def run(self, x: np.ndarray) -> np.ndarray:
        return prepost.run_with(self.spec, self.net, x)


def load_user_model(path: Path, spec: ModelSpec, device: str) -> TorchModel:
    return TorchModel(spec, path, device)
