# SPDX-License-Identifier: Apache-2.0
"""`load_wan` on every layout Wan2.1 T2V weights come in, each written here from a tiny random model, and the loaded
model's noise prediction compared with the source's own forward on fresh random inputs; then one test per bad
layout, each refused in one sentence."""
import json

import pytest
import torch

from comfyui_tmd.tmd_core import CheckpointError, WanConfig, load_wan
from comfyui_tmd.tmd_core.safe_files import write_safetensors
from comfyui_tmd.tmd_core.wan_config import UMT5_TOKENS

from factories import random_wan

# dim 256: files without metadata (official, ComfyUI) get heads = dim // 128 = 2, as ComfyUI reads them; contexts
# are padded to 512 tokens, as for every Wan2.1 file without this pack's metadata.
CONFIG = WanConfig(dim=256, ffn_dim=96, num_heads=2, num_layers=2, text_len=UMT5_TOKENS)
COMFY_PREFIX = "model.diffusion_model."
# Loaded and source models hold the same float32 weights and run the same code: measured 0.0 for every layout; the
# bound allows for float32 reduction order only.
SAME_CODE = 1e-6


@pytest.fixture
def source():
    return random_wan(CONFIG, seed=11)


def probe(seed: int = 5):
    """Fresh random inputs: latent [1, 16, 2, 4, 4], time t in (0.05, 0.95), a 7-token context."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 16, 2, 4, 4, generator=g), torch.rand(1, generator=g) * 0.9 + 0.05,
            torch.randn(1, 7, 4096, generator=g))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def assert_same_prediction(loaded, reference):
    x, t, context = probe()
    with torch.no_grad():
        assert relative_error(loaded(x, 1000 * t, context), reference(x, 1000 * t, context)) < SAME_CODE


def official_state(wan) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone().contiguous() for key, value in wan.state_dict().items()}


def write_sharded(state: dict, folder, shards: int = 3, stem: str = "diffusion_pytorch_model"):
    """The official sharded release: `<stem>-0000i-of-0000n.safetensors` plus `<stem>.safetensors.index.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(state)
    weight_map = {}
    for i in range(shards):
        name = f"{stem}-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = keys[i::shards]
        write_safetensors({k: state[k] for k in part}, folder / name, {"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    index = folder / f"{stem}.safetensors.index.json"
    total = sum(v.numel() * v.element_size() for v in state.values())
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return index


def linear_weight_keys(wan) -> list[str]:
    return [f"{name}.weight" for name, module in wan.named_modules() if isinstance(module, torch.nn.Linear)]


def with_weights(wan, state: dict[str, torch.Tensor]):
    """A copy of `wan` holding `state` (float32), the reference for rounded or quantized files."""
    reference = random_wan(wan.config)
    reference.load_state_dict({k: v.float() for k, v in state.items()})
    return reference


# Official layouts ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("give", ["file", "folder"])
def test_official_single_file(tmp_path, source, give):
    path = write_safetensors(official_state(source), tmp_path / "Wan2.1-T2V" / "diffusion_pytorch_model.safetensors")
    loaded = load_wan(path if give == "file" else path.parent, dtype=torch.float32)
    assert loaded.config == CONFIG and loaded.text_len == UMT5_TOKENS
    assert_same_prediction(loaded, source)


@pytest.mark.parametrize("give", ["index", "folder"])
def test_official_sharded_release(tmp_path, source, give):
    index = write_sharded(official_state(source), tmp_path / "Wan2.1-T2V-14B")
    (index.parent / "Wan2.1_VAE.pth").write_bytes(b"not read")  # the release's other files are left alone
    loaded = load_wan(index if give == "index" else index.parent)
    assert loaded.config == CONFIG
    assert_same_prediction(loaded, source)


def test_entry_points_take_a_release_folder(tmp_path, source):
    """The training teacher, `load_student` and the main command's --wan all go through `load_wan`."""
    from comfyui_tmd.tmd_core import FlowHeadMeta, FlowHeadSpec, TMDStudent, load_student, save_flow_head
    from comfyui_tmd.toy import checkpoints
    from comfyui_tmd.training.config import ModelConfig
    from comfyui_tmd.training.models import load_teacher
    index = write_sharded(official_state(source), tmp_path / "release")
    teacher = load_teacher(ModelConfig(teacher=str(index.parent), wan=None), torch.device("cpu"), torch.float32)
    assert_same_prediction(teacher, source)
    student = TMDStudent.from_teacher(source, FlowHeadSpec(head_blocks=1))
    meta = FlowHeadMeta.describe_model(source, student.extras.spec, outer_steps=2, inner_steps=2, trained_from="test")
    loaded, _ = load_student(index, save_flow_head(student, tmp_path / "head.safetensors", meta))
    assert_same_prediction(loaded.wan, source)
    assert checkpoints.require(index.parent) == index.parent


# ComfyUI's repackaged files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", COMFY_PREFIX])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_comfyui_half_precision(tmp_path, source, dtype, prefix):
    state = {k: v.to(dtype) for k, v in official_state(source).items()}
    path = write_safetensors({prefix + k: v for k, v in state.items()}, tmp_path / "wan2.1_t2v.safetensors")
    assert next(load_wan(path).parameters()).dtype == dtype  # the stored dtype unless told otherwise
    assert_same_prediction(load_wan(path, dtype=torch.float32), with_weights(source, state))


@pytest.mark.parametrize("prefix", ["", COMFY_PREFIX])
def test_comfyui_fp8_e4m3fn(tmp_path, source, prefix):
    """ComfyUI's plain fp8 files: Linear weights in float8_e4m3fn, the rest in a wide dtype; no scales."""
    state = official_state(source)
    for key in linear_weight_keys(source):
        state[key] = state[key].to(torch.float8_e4m3fn)
    path = write_safetensors({prefix + k: v for k, v in state.items()}, tmp_path / "wan_fp8_e4m3fn.safetensors")
    assert_same_prediction(load_wan(path, dtype=torch.float32), with_weights(source, state))
    assert next(load_wan(path).parameters()).dtype == torch.float32  # the unquantized tensors' dtype
    state["head.modulation"] = state["head.modulation"].to(torch.float8_e4m3fn)
    path = write_safetensors({prefix + k: v for k, v in state.items()}, tmp_path / "all_fp8.safetensors")
    assert next(load_wan(path).parameters()).dtype == torch.bfloat16  # nothing computes in fp8: bf16 by default


@pytest.mark.parametrize("prefix", ["", COMFY_PREFIX])
def test_comfyui_fp8_scaled(tmp_path, source, prefix):
    """ComfyUI's "fp8 scaled" files: weight ÷ scale in e4m3, a float32 `scale_weight` (and `scale_input`) per
    Linear, a `scaled_fp8` marker. The reference holds the dequantized weights, stored · scale."""
    state, dequantized = official_state(source), official_state(source)
    for key in linear_weight_keys(source):
        scale = state[key].abs().max() / 448.0  # e4m3's largest finite value
        state[key] = (state[key] / scale).to(torch.float8_e4m3fn)
        dequantized[key] = state[key].float() * scale
        state[key.replace(".weight", ".scale_weight")] = scale.float().reshape(())
        state[key.replace(".weight", ".scale_input")] = torch.ones(())
    state["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    path = write_safetensors({prefix + k: v for k, v in state.items()}, tmp_path / "wan_fp8_scaled.safetensors")
    loaded = load_wan(path, dtype=torch.float32)
    assert_same_prediction(loaded, with_weights(source, dequantized))
    assert relative_error(loaded.blocks[0].ffn[0].weight, source.blocks[0].ffn[0].weight) < 0.1  # e4m3: ~3 bits
    assert next(load_wan(path).parameters()).dtype == torch.float32  # the unquantized tensors' dtype


# diffusers' WanTransformer3DModel -----------------------------------------------------------------------------

def random_diffusers_wan(seed: int = 3):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
    torch.manual_seed(seed)
    model = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=CONFIG.num_heads, attention_head_dim=CONFIG.head_dim,
        in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=CONFIG.ffn_dim,
        num_layers=CONFIG.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
    with torch.no_grad():  # move norms and biases off 1 and 0, so a swapped name cannot pass
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def padded(context: torch.Tensor) -> torch.Tensor:
    """Context zero-padded to 512 tokens, as both pipelines pad it before their DiT (the pack's samplers, not its
    forward, do the padding)."""
    return torch.nn.functional.pad(context, (0, 0, 0, UMT5_TOKENS - context.shape[1]))


# diffusers computes the sinusoidal time embedding in float32, the pack in float64 (as official Wan): at 1000·t
# ≈ 500 the float32 phase is off by ~3e-5 radians. Measured: 9.5e-6 relative, and the same with both models in
# float64, so all of it is that embedding.
DIFFUSERS_TOLERANCE = 3e-5


@pytest.mark.parametrize("save", ["single", "sharded", "pipeline folder", "file without config.json"])
def test_diffusers_transformer_folder(tmp_path, save):
    """Without config.json (a lone file) the size comes from the shapes, heads = dim // 128 as ComfyUI reads it."""
    model = random_diffusers_wan()
    folder = tmp_path / "Wan2.1-T2V-Diffusers" / "transformer"
    model.save_pretrained(folder, max_shard_size="1MB" if save == "sharded" else "10GB")
    assert (len(list(folder.glob("*.safetensors"))) > 1) == (save == "sharded")
    given = {"pipeline folder": folder.parent, "file without config.json": tmp_path / "lone.safetensors"}
    given = given.get(save, folder)
    if save == "file without config.json":
        (folder / "diffusion_pytorch_model.safetensors").rename(given)
    loaded = load_wan(given)
    assert loaded.config == CONFIG and loaded.text_len == UMT5_TOKENS
    x, t, context = probe()
    with torch.no_grad():
        theirs = model(hidden_states=x, timestep=1000 * t, encoder_hidden_states=padded(context), return_dict=False)[0]
        error = relative_error(loaded(x, 1000 * t, padded(context)), theirs)
    assert error < DIFFUSERS_TOLERANCE


def test_diffusers_config_must_match_its_weights(tmp_path):
    folder = tmp_path / "transformer"
    random_diffusers_wan().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "ffn_dim": 128}))
    with pytest.raises(CheckpointError, match=r"config.json disagrees with its weights \(ffn_dim 128 vs 96\)"):
        load_wan(folder)


def test_tensors_are_read_one_at_a_time(tmp_path, source, monkeypatch):
    """Each shard is opened once, and no stored tensor outlives its copy into the model: memory holds the model
    and one tensor, never the model twice."""
    import weakref

    from comfyui_tmd.tmd_core import wan_loading
    index = write_sharded(official_state(source), tmp_path)
    opened, read, most_alive = [], [], 0

    def watched(file, keys):
        nonlocal most_alive
        opened.append(file.name)
        for key, tensor in wan_loading_read(file, keys):
            most_alive = max(most_alive, sum(ref() is not None for ref in read))
            read.append(weakref.ref(tensor))
            yield key, tensor

    wan_loading_read = wan_loading.read_tensors
    monkeypatch.setattr(wan_loading, "read_tensors", watched)
    assert_same_prediction(load_wan(index), source)
    assert sorted(opened) == sorted(set(json.loads(index.read_text())["weight_map"].values()))
    assert len(read) == len(source.state_dict()) and most_alive <= 1  # the previous one, until the loop moves on


# Bad layouts: one sentence each --------------------------------------------------------------------------------

def write_official(tmp_path, wan, name="wan.safetensors", **extra):
    return write_safetensors({**official_state(wan), **extra}, tmp_path / name)


def bad_folder(tmp_path, source):
    (tmp_path / "notes.txt").write_text("weights elsewhere")
    return tmp_path


def bad_json(tmp_path, source):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    return tmp_path / "model_index.json"


def not_json(tmp_path, source):
    (tmp_path / "weights.safetensors.index.json").write_text("{weight_map:")
    return tmp_path / "weights.safetensors.index.json"


def no_wan_keys(tmp_path, source):
    return write_safetensors({"encoder.conv1.weight": torch.randn(4, 3)}, tmp_path / "vae.safetensors")


def image_to_video(tmp_path, source):
    return write_official(tmp_path, source, **{"img_emb.proj.0.bias": torch.randn(1280)})


def wan22_5b(tmp_path, source):
    return write_official(tmp_path, random_wan(WanConfig(256, 96, 2, 1, in_dim=48, out_dim=48)))


def wan22_i2v(tmp_path, source):
    return write_official(tmp_path, random_wan(WanConfig(256, 96, 2, 1, in_dim=36, out_dim=16)))


def wan22_experts(tmp_path, source):
    for expert in ("high_noise_model", "low_noise_model"):
        write_sharded(official_state(source), tmp_path / "Wan2.2-T2V-A14B" / expert)
    return tmp_path / "Wan2.2-T2V-A14B"


def wan22_expert(tmp_path, source):
    return wan22_experts(tmp_path, source) / "low_noise_model"


def diffusers_i2v_config(tmp_path, source):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "WanTransformer3DModel", "image_dim": 1280}))
    return write_safetensors({"proj_out.weight": torch.randn(64, 256), "scale_shift_table": torch.randn(1, 2, 256)},
                             tmp_path / "diffusion_pytorch_model.safetensors")


def missing_shard(tmp_path, source):
    index = write_sharded(official_state(source), tmp_path)
    (tmp_path / "diffusion_pytorch_model-00002-of-00003.safetensors").unlink()
    return index


def misplaced_key(tmp_path, source):
    index = write_sharded(official_state(source), tmp_path)
    contents = json.loads(index.read_text())
    shards = sorted(set(contents["weight_map"].values()))
    first = next(iter(contents["weight_map"]))  # in the first shard: the index now says the second
    contents["weight_map"][first] = shards[1]
    index.write_text(json.dumps(contents))
    return index


def key_in_two_shards(tmp_path, source):
    index = write_sharded(official_state(source), tmp_path)
    write_safetensors({**official_state(source), "extra": torch.randn(2)},
                      tmp_path / "diffusion_pytorch_model-00003-of-00003.safetensors")
    return index


def unlisted_key(tmp_path, source):
    index = write_sharded(official_state(source), tmp_path)
    contents = json.loads(index.read_text())
    del contents["weight_map"]["head.head.bias"]
    index.write_text(json.dumps(contents))
    return index


def several_files(tmp_path, source):
    write_official(tmp_path, source, "a.safetensors")
    write_official(tmp_path, source, "b.safetensors")
    return tmp_path


def nothing_there(tmp_path, source):
    return tmp_path / "absent"


@pytest.mark.parametrize("make, message", [
    (bad_folder, r"holds no \.safetensors file or \*\.safetensors\.index\.json; expected a Wan2\.1 diffusion model"),
    (bad_json, r"model_index\.json is not a safetensors index: it has no 'weight_map'"),
    (not_json, r"weights\.safetensors\.index\.json is not JSON"),
    (no_wan_keys, r"vae\.safetensors is not a Wan diffusion model"),
    (image_to_video, r"wan\.safetensors is a Wan2\.1 image-to-video model; TMD supports Wan2\.1 text-to-video only\."),
    (wan22_5b, r"is a Wan2\.2 TI2V-5B model \(48-channel latent\); TMD supports Wan2\.1 text-to-video only\."),
    (wan22_i2v, r"is an image-conditioned Wan model \(36 input channels, 16 output\)"),
    (wan22_experts, r"Wan2\.2-T2V-A14B is a Wan2\.2 A14B release"),
    (wan22_expert, r"low_noise_model is a Wan2\.2 A14B expert \(low_noise_model\); TMD supports Wan2\.1"),
    (diffusers_i2v_config, r"is a Wan2\.1 image-to-video model \(its config has image_dim"),
    (missing_shard, r"names the shard diffusion_pytorch_model-00002-of-00003\.safetensors, which is not in"),
    (misplaced_key, r"the shards disagree with .*index\.json: it places patch_embedding\.weight in "
                    r".*-00002-of-00003\.safetensors, but it is in .*-00001-of-00003"),
    (key_in_two_shards, r"the shards disagree: \S+ is in both \S+-0000[12]-of-00003\.safetensors and \S+-00003-of"),
    (unlisted_key, r"the shards disagree with .*: .* holds head\.head\.bias, which the index does not list"),
    (several_files, r"holds 2 \.safetensors files \(a\.safetensors, \.\.\.\) and no \*\.safetensors\.index\.json"),
    (nothing_there, r"no file or folder at .*absent\."),
])
def test_bad_layout_is_refused_in_one_sentence(tmp_path, source, make, message):
    with pytest.raises(CheckpointError, match=message) as err:
        load_wan(make(tmp_path, source))
    assert "\n" not in str(err.value) and str(err.value).endswith(".")
