# SPDX-License-Identifier: Apache-2.0
"""The training validation's `comfyui:<file>` decoder: a Wan2.1 VAE file through ComfyUI's own loader decodes
the model's normalised latents as ComfyUI's Wan VAE does after its latent format's process_out."""
import torch

from comfyui_tmd.tmd_core.safe_files import write_safetensors
from comfyui_tmd.training.decoders import make_decoder


def test_the_comfyui_decoder_denormalises_then_decodes_with_comfyuis_wan_vae(comfy, tmp_path):
    import comfy.latent_formats
    import comfy.ldm.wan.vae

    # ComfyUI builds the Wan2.1 VAE at its one size, so the file is full size (random weights, float16 on disk).
    vae = comfy.ldm.wan.vae.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                   temperal_downsample=[False, True, True], dropout=0.0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # ComfyUI's ops skip initialisation: fill every tensor
        for name, p in vae.state_dict().items():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.1 * noise if "gamma" in name else 0.05 * noise)
    weights = {k: v.half() for k, v in vae.state_dict().items()}
    path = write_safetensors(weights, tmp_path / "wan_2.1_vae.safetensors")
    decoder = make_decoder(f"comfyui:{path}", torch.device("cpu"))

    latent = torch.randn(1, 16, 2, 2, 2, generator=g)  # [B, C, T, H, W] in the model's normalised space
    frames = decoder(latent)
    wan21 = comfy.latent_formats.Wan21()
    z = latent * wan21.latents_std + wan21.latents_mean  # the VAE's own latent space (scale factor 1)
    vae.load_state_dict({k: v.float() for k, v in weights.items()})
    with torch.no_grad():
        video = vae.decode(z)  # [1, 3, F, H', W'] in [-1, 1]
    assert frames.shape == (1, 5, 16, 16, 3)  # 1 + 4·(T − 1) frames, 8× the latent's side
    torch.testing.assert_close(frames, ((video + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1), atol=2e-3, rtol=0)
    assert frames.std() > 0.01
