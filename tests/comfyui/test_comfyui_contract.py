# SPDX-License-Identifier: Apache-2.0
"""The ComfyUI internals the bridge relies on hold in the ComfyUI under test, the pack's declared ComfyUI range
contains it, and a moved internal is named in one sentence."""
import tomllib

import pytest
from packaging.specifiers import SpecifierSet

from .conftest import COMFYUI_PATH, PACK_ROOT


def test_the_comfyui_under_test_keeps_every_internal_the_bridge_uses(comfy, student_files):
    from comfyui_tmd.nodes.comfy_contract import contract_breaks, wan_part_breaks
    folder, _ = student_files
    wan = comfy.sd.load_diffusion_model(str(folder / "wan_student.safetensors")).get_model_object("diffusion_model")
    assert contract_breaks() + wan_part_breaks(wan) == []


def test_the_declared_comfyui_range_contains_the_comfyui_under_test(comfy):
    import importlib.util
    spec = importlib.util.spec_from_file_location("comfyui_version", f"{COMFYUI_PATH}/comfyui_version.py")
    version = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(version)
    declared = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["comfy"]
    assert version.__version__ in SpecifierSet(declared["requires-comfyui"])


def test_a_moved_internal_is_named_in_one_sentence(comfy, monkeypatch):
    import comfy.patcher_extension
    import comfy.samplers
    from comfyui_tmd.nodes.comfy_contract import contract_breaks, wan_part_breaks

    def outer_sample(self, noise, sampler, sigmas):  # a release that dropped latent_image
        raise AssertionError("never called")

    monkeypatch.setattr(comfy.samplers.CFGGuider, "outer_sample", outer_sample)
    monkeypatch.delattr(comfy.patcher_extension.WrappersMP, "DIFFUSION_MODEL")
    assert contract_breaks() == [
        "CFGGuider.outer_sample (the OUTER_SAMPLE wrapper's call) now takes (self, noise, sampler, sigmas), the pack "
        "expects (self, noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed).",
        "ComfyUI no longer has WrappersMP.DIFFUSION_MODEL, which the TMD bridge uses.",
    ]
    first = wan_part_breaks(object())[0]
    assert first == "ComfyUI's WanModel has no 'blocks' any more, which the TMD core runs directly."


@pytest.mark.parametrize("moved", [False, True], ids=["contract holds", "an internal moved"])
def test_the_entry_point_logs_each_moved_internal(comfy, caplog, monkeypatch, moved):
    import asyncio

    import comfy.patcher_extension
    from comfyui_tmd import comfy_entrypoint
    if moved:
        monkeypatch.delattr(comfy.patcher_extension.WrappersMP, "OUTER_SAMPLE")
    with caplog.at_level("WARNING"):
        asyncio.run(comfy_entrypoint())
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("comfyui-tmd:")]
    assert logged == (["comfyui-tmd: ComfyUI no longer has WrappersMP.OUTER_SAMPLE, which the TMD bridge uses."]
                      if moved else [])
