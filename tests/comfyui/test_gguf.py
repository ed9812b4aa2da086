# SPDX-License-Identifier: Apache-2.0
"""GGUF Wan files loaded by ComfyUI-GGUF (city96/ComfyUI-GGUF, Apache-2.0): its Unet Loader nodes, then the pack's
TMD nodes, equal the core on the dequantized weights.

ComfyUI-GGUF is never vendored: set COMFYUI_GGUF_PATH to a checkout of it and install `gguf` (its requirement).
CI cannot fetch GitHub, so these tests skip there."""
import asyncio
import copy
import importlib.util
import os
from pathlib import Path

import pytest
import torch

from .comfy_world import patched_model
from .test_model_files import TOLERANCE, relative_error, sample_both

GGUF_PACK = os.environ.get("COMFYUI_GGUF_PATH")
pytestmark = pytest.mark.skipif(
    not (GGUF_PACK and (Path(GGUF_PACK) / "loader.py").is_file() and importlib.util.find_spec("gguf")),
    reason="needs a ComfyUI-GGUF checkout in COMFYUI_GGUF_PATH and the gguf package")
# The quant types the gguf package can write (it cannot quantize to K-quants); both use blocks of 32 along a row.
QUANTS = ["Q8_0", "Q4_0"]


@pytest.fixture(scope="module")
def gguf_nodes(comfy_nodes, student_files, tmp_path_factory):
    """ComfyUI-GGUF's node classes, loaded by ComfyUI's custom-node loader as a user's install is, and the
    folder (registered as diffusion_models) holding the student as a GGUF file per quant type."""
    import folder_paths
    assert asyncio.run(comfy_nodes.load_custom_node(str(Path(GGUF_PACK).resolve())))
    folder = tmp_path_factory.mktemp("gguf")
    for quant in QUANTS:
        write_gguf(student_files[1].wan, folder / f"wan_student_{quant}.gguf", quant)
    folder_paths.add_model_folder_path("diffusion_models", str(folder))
    return comfy_nodes.NODE_CLASS_MAPPINGS, folder


def quantized_key(key: str, value: torch.Tensor) -> bool:
    """What ComfyUI-GGUF's patched llama-quantize (tools/lcpp.patch) quantizes in a Wan: the blocks' 2-D Linear
    weights; modulation, norms, biases, embeddings and the output head keep their precision."""
    return key.startswith("blocks.") and key.endswith(".weight") and value.ndim == 2


def write_gguf(wan, path: Path, quant: str) -> None:
    """`wan` in the layout of ComfyUI-GGUF's tools/convert.py: bare Wan keys, general.architecture = "wan", the
    block Linear weights in `quant`, the rest F32 (the 5-D patch embedding too, as tools/fix_5d_tensors.py adds it)."""
    import gguf
    qtype = gguf.GGMLQuantizationType[quant]
    writer = gguf.GGUFWriter(path=None, arch="wan")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{quant}"])
    for key, value in wan.state_dict().items():
        data = value.float().numpy()
        if quantized_key(key, value):
            writer.add_tensor(key, gguf.quants.quantize(data, qtype), raw_dtype=qtype)  # [out, in/32 · block bytes]
        else:
            writer.add_tensor(key, data)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def dequantized_from_file(student, path: Path):
    """`student` with the Wan weights of the GGUF file at `path`, dequantized by the gguf package in float32."""
    import gguf
    rounded = copy.deepcopy(student)
    state = rounded.wan.state_dict()
    with torch.no_grad():
        for tensor in gguf.GGUFReader(path).tensors:
            weights = torch.from_numpy(gguf.quants.dequantize(tensor.data, tensor.tensor_type))  # [out, in] float32
            state[tensor.name].copy_(weights.reshape(state[tensor.name].shape))
    return rounded


def dequantized_as_held(student, model):
    """`student` with the weights ComfyUI-GGUF's layers of `model` dequantize to for a float32 forward."""
    rounded = copy.deepcopy(student)
    state = rounded.wan.state_dict()
    with torch.no_grad():
        for name, module in model.model.diffusion_model.named_modules():
            if hasattr(module, "is_ggml_quantized") and module.is_ggml_quantized():
                state[f"{name}.weight"].copy_(module.get_weight(module.weight, torch.float32))
    return rounded


def loaded(model, quant: str):
    """`model` is ComfyUI's WanModel with the block Linear weights still quantized, as ComfyUI-GGUF holds them."""
    import comfy.ldm.wan.model
    wan = model.model.diffusion_model
    assert isinstance(wan, comfy.ldm.wan.model.WanModel)
    assert wan.blocks[0].ffn[0].weight.tensor_type.name == quant
    return model


@pytest.mark.parametrize("quant", QUANTS)
def test_unet_loader_gguf(comfy, nodes, student_files, gguf_nodes, quant):
    """UnetLoaderGGUF as users run it. By default its layers dequantize Q8_0/Q4_0 in float16 (the float16 scale
    times the integers), a rounding the float32 dequantization lacks, so the core gets the weights they compute with."""
    folder, student = student_files
    classes, _ = gguf_nodes
    model = loaded(classes["UnetLoaderGGUF"]().load_unet(f"wan_student_{quant}.gguf")[0], quant)
    rounded = dequantized_as_held(student, model)
    ours, core = sample_both(comfy, nodes, patched_model(comfy, nodes, folder, model), rounded)
    assert relative_error(ours, core) < TOLERANCE
    assert relative_error(ours, sample_both(comfy, nodes, patched_model(comfy, nodes, folder), student)[0]) > TOLERANCE


@pytest.mark.parametrize("quant", QUANTS)
def test_unet_loader_gguf_float32_dequant(comfy, nodes, student_files, gguf_nodes, quant):
    """UnetLoaderGGUFAdvanced(dequant_dtype=float32) against the gguf package's own dequantization of the file,
    so the reference owes nothing to ComfyUI-GGUF's code."""
    folder, student = student_files
    classes, gguf_folder = gguf_nodes
    (model,) = classes["UnetLoaderGGUFAdvanced"]().load_unet(f"wan_student_{quant}.gguf", dequant_dtype="float32")
    rounded = dequantized_from_file(student, gguf_folder / f"wan_student_{quant}.gguf")
    ours, core = sample_both(comfy, nodes, patched_model(comfy, nodes, folder, loaded(model, quant)), rounded)
    assert relative_error(ours, core) < TOLERANCE
    assert relative_error(ours, sample_both(comfy, nodes, patched_model(comfy, nodes, folder), student)[0]) > TOLERANCE
