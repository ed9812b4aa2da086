# SPDX-License-Identifier: Apache-2.0
"""The pack's Wan DiT against an independent float64 reference written from the official Wan2.1 equations
(complex-number RoPE, explicit per-head attention, explicit unpatchify), plus key layout and loading."""
import math

import pytest
import torch

from comfyui_tmd.tmd_core import (CheckpointError, LatentShapeError, WanConfig, WanDiT, detect_wan_config, load_wan,
                                  save_wan)
from comfyui_tmd.tmd_core.wan_config import strip_key_prefix

from factories import SMALL, random_wan


def reference_wan(sd: dict, cfg: WanConfig, x, t, context):
    """Wan2.1 T2V forward in float64, straight from the official model's equations."""
    sd = {k: v.double() for k, v in sd.items()}
    x, t, context = x.double(), t.double(), context.double()

    def lin(v, name):
        return v @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    def ln(v, w=None, b=None):
        return torch.nn.functional.layer_norm(v, v.shape[-1:], w, b, cfg.eps)

    def rms(v, w):
        return v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + cfg.eps) * w

    def gelu(v):
        return torch.nn.functional.gelu(v, approximate="tanh")

    silu = torch.nn.functional.silu
    b, n, d = x.shape[0], cfg.num_heads, cfg.head_dim

    half = cfg.freq_dim // 2
    ang = t[:, None] * torch.pow(10000.0, -torch.arange(half, dtype=torch.float64) / half)
    sin_emb = torch.cat([ang.cos(), ang.sin()], 1)
    e = lin(silu(lin(sin_emb, "time_embedding.0")), "time_embedding.2")  # [B, dim]
    e0 = lin(silu(e), "time_projection.1").view(b, 6, cfg.dim)

    f, h, w = x.shape[2], x.shape[3] // 2, x.shape[4] // 2
    patches = x.view(b, 16, f, h, 2, w, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, f * h * w, 16 * 4)
    tokens = patches @ sd["patch_embedding.weight"].reshape(cfg.dim, -1).T + sd["patch_embedding.bias"]
    ctx = lin(gelu(lin(context, "text_embedding.0")), "text_embedding.2")

    # RoPE as complex rotations of adjacent pairs; axes get 22/21/21 of 64 pairs for head_dim 128.
    c = d // 2
    splits = [c - 2 * (c // 3), c // 3, c // 3]
    axes = torch.meshgrid(torch.arange(f), torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack(axes, -1).reshape(-1, 3)
    angles = [pos[:, i:i + 1].double() / 10000.0 ** (torch.arange(0, 2 * s, 2, dtype=torch.float64) / (2 * s))
              for i, s in enumerate(splits)]
    rot = torch.polar(torch.ones(1, dtype=torch.float64), torch.cat(angles, 1))  # [L, c]

    def rope(v):  # [B, L, n, d]
        vc = torch.view_as_complex(v.reshape(*v.shape[:-1], c, 2).contiguous())
        return torch.view_as_real(vc * rot[None, :, None, :]).reshape(v.shape)

    def attention(q, k, v):
        q, k, v = (a.permute(0, 2, 1, 3) for a in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), -1)
        return (weights @ v).permute(0, 2, 1, 3).reshape(b, -1, cfg.dim)

    for i in range(cfg.num_layers):
        p = f"blocks.{i}."
        m = (sd[p + "modulation"] + e0).unbind(1)  # 6 × [B, dim]
        y = ln(tokens) * (1 + m[1][:, None]) + m[0][:, None]
        q = rope(rms(lin(y, p + "self_attn.q"), sd[p + "self_attn.norm_q.weight"]).view(b, -1, n, d))
        k = rope(rms(lin(y, p + "self_attn.k"), sd[p + "self_attn.norm_k.weight"]).view(b, -1, n, d))
        v = lin(y, p + "self_attn.v").view(b, -1, n, d)
        tokens = tokens + lin(attention(q, k, v), p + "self_attn.o") * m[2][:, None]
        y = ln(tokens, sd[p + "norm3.weight"], sd[p + "norm3.bias"])
        q = rms(lin(y, p + "cross_attn.q"), sd[p + "cross_attn.norm_q.weight"]).view(b, -1, n, d)
        k = rms(lin(ctx, p + "cross_attn.k"), sd[p + "cross_attn.norm_k.weight"]).view(b, -1, n, d)
        v = lin(ctx, p + "cross_attn.v").view(b, -1, n, d)
        tokens = tokens + lin(attention(q, k, v), p + "cross_attn.o")
        y = ln(tokens) * (1 + m[4][:, None]) + m[3][:, None]
        tokens = tokens + lin(gelu(lin(y, p + "ffn.0")), p + "ffn.2") * m[5][:, None]

    hm = (sd["head.modulation"] + e[:, None]).unbind(1)
    out = lin(ln(tokens) * (1 + hm[1][:, None]) + hm[0][:, None], "head.head")  # [B, L, (1·2·2)·16], c fastest
    out = out.view(b, f, h, w, 1, 2, 2, 16).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return out.reshape(b, 16, f, 2 * h, 2 * w)


def test_forward_matches_float64_reference(wan, inputs):
    x, t, context = inputs
    cfg = WanConfig(dim=SMALL.dim, ffn_dim=SMALL.ffn_dim, num_heads=SMALL.num_heads, num_layers=SMALL.num_layers)
    ours = wan.double()(x.double(), 1000 * t.double(), context.double())
    ref = reference_wan(wan.state_dict(), cfg, x, 1000 * t.double(), context)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)


def test_head_dim_128_rope_split_matches_reference():
    cfg = WanConfig(dim=256, ffn_dim=64, num_heads=2, num_layers=1)
    wan = random_wan(cfg, seed=3)
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(1, 16, 2, 4, 4, generator=g), torch.rand(1, generator=g)
    ctx = torch.randn(1, 5, 4096, generator=g)
    ours = wan.double()(x.double(), 1000 * t.double(), ctx.double())
    expected = reference_wan(wan.state_dict(), cfg, x, 1000 * t.double(), ctx)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-9)


def test_float32_forward_close_to_float64(wan, inputs):
    x, t, context = inputs
    ref = reference_wan(wan.state_dict(), SMALL, x, 1000 * t, context)
    ours = wan(x, 1000 * t, context).double()
    assert ((ours - ref).norm() / ref.norm()).item() < 1e-5


def test_key_layout_is_the_official_one(wan):
    keys = set(wan.state_dict())
    top = {"patch_embedding.weight", "patch_embedding.bias", "text_embedding.0.weight", "text_embedding.0.bias",
           "text_embedding.2.weight", "text_embedding.2.bias", "time_embedding.0.weight", "time_embedding.0.bias",
           "time_embedding.2.weight", "time_embedding.2.bias", "time_projection.1.weight", "time_projection.1.bias",
           "head.modulation", "head.head.weight", "head.head.bias"}
    per_block = {"modulation", "norm3.weight", "norm3.bias", "ffn.0.weight", "ffn.0.bias", "ffn.2.weight", "ffn.2.bias"}
    for attn in ("self_attn", "cross_attn"):
        per_block |= {f"{attn}.{p}.{w}" for p in "qkvo" for w in ("weight", "bias")}
        per_block |= {f"{attn}.norm_q.weight", f"{attn}.norm_k.weight"}
    assert len(per_block) == 27
    assert keys == top | {f"blocks.{i}.{k}" for i in range(SMALL.num_layers) for k in per_block}
    sd = wan.state_dict()
    assert sd["head.modulation"].shape == (1, 2, SMALL.dim) and sd["blocks.0.modulation"].shape == (1, 6, SMALL.dim)
    assert sd["patch_embedding.weight"].shape == (SMALL.dim, 16, 1, 2, 2)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model.", "diffusion_model."])
def test_detection_and_round_trip(tmp_path, wan, inputs, prefix):
    from safetensors.torch import save_file
    x, t, context = inputs
    path = tmp_path / "wan.safetensors"
    save_file({prefix + k: v.contiguous() for k, v in wan.state_dict().items()}, path,
              metadata={"config": '{"transformer": {"num_heads": 2}}'})
    loaded = load_wan(path)
    assert loaded.config == SMALL
    torch.testing.assert_close(loaded(x, 1000 * t, context), wan(x, 1000 * t, context), rtol=0, atol=0)


def test_heads_default_to_dim_over_128_like_comfyui(wan):
    assert detect_wan_config(strip_key_prefix(random_wan(WanConfig(256, 64, 2, 1)).state_dict())).num_heads == 2
    assert detect_wan_config(wan.state_dict(), {"config": '{"transformer": {"num_heads": 2}}'}).num_heads == 2


def test_save_wan_writes_loadable_bf16(tmp_path, wan):
    path = save_wan(wan.to(torch.bfloat16), tmp_path / "w.safetensors")
    loaded = load_wan(path)
    assert next(loaded.parameters()).dtype == torch.bfloat16 and loaded.config == SMALL


def test_strict_loading_names_missing_unexpected_and_misshapen_keys(tmp_path, wan):
    from safetensors.torch import save_file
    sd = {k: v.contiguous() for k, v in wan.state_dict().items()}
    meta = {"config": '{"transformer": {"num_heads": 2}}'}
    broken = dict(sd)
    del broken["blocks.3.ffn.2.bias"]
    save_file(broken, tmp_path / "missing.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=r"missing 1 Wan keys \(blocks\.3\.ffn\.2\.bias\)"):
        load_wan(tmp_path / "missing.safetensors")
    save_file({**sd, "blocks.0.lora_down.weight": torch.randn(2, 2)}, tmp_path / "extra.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="lora_down"):
        load_wan(tmp_path / "extra.safetensors")
    save_file({**sd, "blocks.2.self_attn.q.bias": torch.randn(3)}, tmp_path / "shape.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=r"blocks\.2\.self_attn\.q\.bias of shape \(3,\)"):
        load_wan(tmp_path / "shape.safetensors")
    save_file({"encoder.weight": torch.randn(2)}, tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="not a Wan diffusion model"):
        load_wan(tmp_path / "vae.safetensors")


def test_loading_the_wrong_size_is_refused(tmp_path, wan):
    path = save_wan(wan, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="holds a 6-layer dim-64 Wan, expected a 30-layer dim-1536 Wan"):
        from comfyui_tmd.tmd_core import WAN21_T2V_1_3B
        load_wan(path, expect=WAN21_T2V_1_3B)


@pytest.mark.parametrize("shape, match", [
    ((2, 15, 3, 4, 6), "expected \\[batch, 16"),
    ((2, 16, 4, 6), "expected \\[batch, 16"),
    ((2, 16, 3, 5, 6), "height 5 is not a multiple"),
])
def test_bad_latents_are_refused(wan, inputs, shape, match):
    _, t, context = inputs
    with pytest.raises(LatentShapeError, match=match):
        wan(torch.randn(shape), 1000 * t, context)


def test_bad_context_is_refused(wan, inputs):
    x, t, _ = inputs
    with pytest.raises(LatentShapeError, match="text context"):
        wan(x, 1000 * t, torch.randn(2, 7, 768))
    with pytest.raises(LatentShapeError, match="one umT5 embedding per latent"):
        wan(x, 1000 * t, torch.randn(1, 7, 4096))


def test_named_configs_build_with_the_published_sizes():
    from comfyui_tmd.tmd_core import WAN21_T2V_1_3B, WAN21_T2V_14B
    with torch.device("meta"):
        small, big = WanDiT(WAN21_T2V_1_3B), WanDiT(WAN21_T2V_14B)
    small_count, big_count = (sum(p.numel() for p in m.parameters()) for m in (small, big))
    assert 1.40e9 < small_count < 1.45e9  # Wan2.1 "1.3B" has 1.42 B parameters
    assert 14.0e9 < big_count < 14.5e9
