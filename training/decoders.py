# SPDX-License-Identifier: Apache-2.0
"""Latent-to-video decoders for validation samples, chosen by `validation.decoder`:

    toy                  the toy world's exact decoder (toy/latent.py)
    diffusers:<folder>   the Wan2.1 VAE through diffusers' AutoencoderKLWan (a local folder, e.g. the Wan2.1
                         Diffusers repository's `vae/`); needs the diffusers package
    comfyui:<file>       the Wan2.1 VAE file through ComfyUI's own loader (comfy.sd.VAE); ComfyUI must be
                         importable or its checkout named by the COMFYUI_PATH environment variable
    none                 no decoder: validation writes the latents only

A decoder maps a latent [B, 16, T, H, W] in the model's (normalised) latent space to frames [B, F, H', W', 3]
in [0, 1] on the CPU. The Wan latents a model sees are the VAE's latents normalised per channel,
(z − mean) / std, so the real decoders undo that first with the VAE's own statistics.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

import torch

from ..toy.latent import decode as toy_decode
from .comfyui_checkout import import_comfyui
from .errors import TrainingConfigError

Decoder = Callable[[torch.Tensor], torch.Tensor]


def make_decoder(spec: str, device: torch.device) -> Decoder | None:
    """The decoder `spec` names (validation.decoder), loaded onto `device`; None for "none"."""
    kind, _, location = spec.partition(":")
    if spec == "none":
        return None
    if spec == "toy":
        return lambda latent: toy_decode(latent.float().cpu())
    if kind == "diffusers":
        return DiffusersWanDecoder(Path(location), device)
    if kind == "comfyui":
        return ComfyUIWanDecoder(Path(location), device)
    raise TrainingConfigError(f"validation.decoder is {spec!r}; expected toy, none, diffusers:<folder> or "
                              "comfyui:<file>.")


class DiffusersWanDecoder:
    """diffusers' AutoencoderKLWan from a local folder (config.json + weights); never downloads."""

    def __init__(self, folder: Path, device: torch.device):
        if importlib.util.find_spec("diffusers") is None:
            raise TrainingConfigError(f"validation.decoder diffusers:{folder} needs the diffusers package, which is "
                                      "not installed (pip install diffusers).")
        if not (folder / "config.json").is_file():
            raise TrainingConfigError(f"validation.decoder diffusers:{folder} must be a folder with the Wan VAE's "
                                      "config.json and weights (the `vae` folder of a Wan2.1 Diffusers model).")
        from diffusers import AutoencoderKLWan

        # safetensors only and never a download: a pickled .bin is not opened
        self.vae = AutoencoderKLWan.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        self.vae = self.vae.to(device).eval()
        channels = self.vae.config.z_dim
        self.mean = torch.tensor(self.vae.config.latents_mean).view(1, channels, 1, 1, 1)
        self.std = torch.tensor(self.vae.config.latents_std).view(1, channels, 1, 1, 1)

    @torch.no_grad()
    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        weight = next(self.vae.parameters())
        z = latent.float().cpu() * self.std + self.mean  # [B, 16, T, H, W], the VAE's own latent space
        video = self.vae.decode(z.to(weight.device, weight.dtype)).sample  # [B, 3, F, H', W'] in [-1, 1]
        return ((video.float().cpu() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)  # [B, F, H', W', 3]


def _import_comfy(device: torch.device):
    """ComfyUI's `comfy` package: importable already, or from the checkout named by COMFYUI_PATH (put on sys.path
    only here, when a config asks for ComfyUI's decoder)."""
    if importlib.util.find_spec("comfy") is None:
        root = os.environ.get("COMFYUI_PATH")
        if not root or not (Path(root) / "comfy").is_dir():
            raise TrainingConfigError("validation.decoder comfyui:<file> needs ComfyUI: set COMFYUI_PATH to a ComfyUI "
                                      f"checkout (it is {root!r}).")
        import_comfyui(root, device.type)
    import comfy.latent_formats
    import comfy.sd
    import comfy.utils

    return comfy


class ComfyUIWanDecoder:
    """A Wan2.1 VAE file loaded by ComfyUI's own VAE loader, on the device ComfyUI's memory manager picks."""

    def __init__(self, file: Path, device: torch.device):
        if not file.is_file() or file.suffix != ".safetensors":
            raise TrainingConfigError(f"validation.decoder comfyui:{file} must be a Wan2.1 VAE .safetensors file.")
        comfy = _import_comfy(device)
        self.vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(file), safe_load=True))
        self.latent_format = comfy.latent_formats.Wan21()

    @torch.no_grad()
    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        z = self.latent_format.process_out(latent.float().cpu())  # [B, 16, T, H, W], the VAE's own latent space
        return self.vae.decode(z).float().cpu().clamp(0, 1)  # [B, F, H', W', 3]
