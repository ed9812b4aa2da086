# SPDX-License-Identifier: Apache-2.0
"""The TMD nodes (V3): thin adapters over nodes.comfy_bridge. Category sampling/TMD."""
from __future__ import annotations

import logging
import os

import comfy.samplers
import folder_paths
from comfy_api.latest import io

from . import comfy_bridge
from ..tmd_core.grids import tmd_sigmas

TMDHead = io.Custom("TMD_HEAD")
CATEGORY = "sampling/TMD"
MODEL_FOLDER = "tmd"
HEAD_EXTENSIONS = (".safetensors",)  # never pickles: the loader refuses anything else


def register_model_folder() -> None:
    """Add models/tmd to ComfyUI's model folders (made if missing), keeping paths extra_model_paths.yaml already
    set; list only .safetensors files, the only kind the flow-head loader opens."""
    path = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:  # a read-only install: the folder is still listed, and extra_model_paths.yaml may add more
        logging.warning("comfyui-tmd: could not create %s (%s); put flow-head files in a folder listed under 'tmd' "
                        "in extra_model_paths.yaml.", path, err)
    if MODEL_FOLDER in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(MODEL_FOLDER, path)
        paths, _ = folder_paths.folder_names_and_paths[MODEL_FOLDER]
    else:
        paths = [path]
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, set(HEAD_EXTENSIONS))


class TMDFlowHeadLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TMDFlowHeadLoader", display_name="Load TMD Flow Head", category=CATEGORY,
            description="Loads the flow-head file of a TMD student (fusion layer and (s−r) embedding) from models/tmd.",
            inputs=[io.Combo.Input("head_name", options=folder_paths.get_filename_list(MODEL_FOLDER),
                                   tooltip="The *_head.safetensors file that belongs to the Wan student loaded by "
                                           "UNETLoader.")],
            outputs=[TMDHead.Output(display_name="TMD_HEAD")],
        )

    @classmethod
    def execute(cls, head_name) -> io.NodeOutput:
        return io.NodeOutput(comfy_bridge.read_head_file(folder_paths.get_full_path_or_raise(MODEL_FOLDER, head_name)))


class TMDApplyFlowHead(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TMDApplyFlowHead", display_name="TMD Apply Flow Head", category=CATEGORY,
            description="Turns a Wan2.1 model into a TMD student: the first blocks run once per step as the backbone, "
                        "the last H blocks run N times as the flow head.",
            inputs=[io.Model.Input("model", tooltip="The student's Wan2.1 T2V model from UNETLoader (LoRAs may be "
                                                    "applied before or after)."),
                    TMDHead.Input("head", tooltip="The matching flow head from 'Load TMD Flow Head'.")],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, head) -> io.NodeOutput:
        return io.NodeOutput(comfy_bridge.apply_flow_head(model, head))


class TMDScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TMDScheduler", display_name="TMD Scheduler", category=CATEGORY,
            description="The TMD outer time grid: shift_γ(0.999·i/M), e.g. M=2 gives [0.999, 0.909, 0]. "
                        "By default M and γ are the ones the model's flow head was trained for.",
            inputs=[io.Model.Input("model", tooltip="The model from 'TMD Apply Flow Head' (or any node after it): "
                                                    "its flow head says which M and γ it was trained for."),
                    io.Int.Input("steps", default=0, min=0, max=16,
                                 tooltip="Outer steps M; 0 uses the M the flow head was trained for."),
                    io.Float.Input("gamma", default=0.0, min=0.0, max=100.0, step=0.5,
                                   tooltip="Time shift γ (≥ 1) of the outer grid; 0 uses the head's own "
                                           "(10 in the paper).")],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, model, steps, gamma) -> io.NodeOutput:
        patch = comfy_bridge.tmd_patch(model, "TMD Scheduler")
        return io.NodeOutput(tmd_sigmas(steps or patch.meta.outer_steps, gamma or patch.meta.outer_gamma))


class TMDSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TMDSampler", display_name="TMD Sampler", category=CATEGORY,
            description="Samples a TMD-patched model: per outer step, the backbone once and the flow head N times. "
                        "Use cfg 1.",
            inputs=[io.Int.Input("inner_steps", default=0, min=0, max=16,
                                 tooltip="Inner flow-head steps N; 0 uses the N the head was trained with."),
                    io.Float.Input("inner_gamma", default=0.0, min=0.0, max=100.0, step=0.5,
                                   tooltip="Time shift γ of the inner grid; 0 uses the head's own (10 in the paper).")],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, inner_steps, inner_gamma) -> io.NodeOutput:
        options = {"inner_steps": inner_steps or None, "inner_gamma": inner_gamma or None}
        return io.NodeOutput(comfy.samplers.KSAMPLER(comfy_bridge.sample_tmd, extra_options=options))


NODES = [TMDFlowHeadLoader, TMDApplyFlowHead, TMDScheduler, TMDSampler]
