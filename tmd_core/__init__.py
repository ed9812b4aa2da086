# SPDX-License-Identifier: Apache-2.0
"""The TMD core: Wan2.1 DiT, backbone/flow-head student, sampler and checkpoint format. Plain torch, no ComfyUI."""
from .checkpoint import (FlowHeadMeta, attach_flow_head, build_extras, load_flow_head, load_student, read_flow_head,
                         save_flow_head, save_student)
from .errors import CheckpointError, LatentShapeError, NonFiniteError, SamplingConfigError, TMDError
from .flow_head import FlowHeadExtras, FlowHeadSpec
from .inner_form import INNER_FORMS, average_velocity, flow_map_step
from .kernel_switch import set_kernel_impl
from .grids import effective_nfe, shift_time, teacher_sigmas, tmd_grid, tmd_sigmas
from .sampler import CFGDenoiser, InnerFlow, TMDDenoiser, generate_teacher, generate_tmd, inner_rollout, sample_euler
from .student import BackboneFeatures, HeadTime, TMDStudent
from .wan_config import NAMED_CONFIGS, WAN21_T2V_1_3B, WAN21_T2V_14B, WAN_TINY, WanConfig, detect_wan_config
from .wan_loading import load_wan, save_wan
from .wan_model import WanDiT

__all__ = [
    "BackboneFeatures", "CFGDenoiser", "CheckpointError", "FlowHeadExtras", "FlowHeadMeta", "FlowHeadSpec", "HeadTime",
    "INNER_FORMS", "InnerFlow", "LatentShapeError", "NAMED_CONFIGS", "NonFiniteError", "SamplingConfigError",
    "TMDDenoiser", "TMDError", "TMDStudent", "WAN21_T2V_14B", "WAN21_T2V_1_3B", "WAN_TINY", "WanConfig", "WanDiT",
    "attach_flow_head", "average_velocity", "build_extras", "detect_wan_config", "effective_nfe", "flow_map_step",
    "generate_teacher", "generate_tmd", "inner_rollout", "load_flow_head", "load_student", "load_wan",
    "read_flow_head", "sample_euler", "save_flow_head", "save_student", "save_wan", "set_kernel_impl", "shift_time",
    "teacher_sigmas", "tmd_grid", "tmd_sigmas",
]
