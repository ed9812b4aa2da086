# SPDX-License-Identifier: Apache-2.0
"""The toy world's nodes (V3): its text encoder and its exact decoder. Category sampling/TMD/toy.

ComfyUI's samplers hand out latents in the latent format's outer space: for a Wan2.1 model
(comfy.latent_formats.Wan21) process_out maps the model's latent z to z·std + mean, per channel. The
toy DiT is trained on toy latents z directly, so the decoder first applies Wan21.process_in
((latent − mean) / std) to get z back, then the toy decoder.
"""
from __future__ import annotations

import comfy.latent_formats
from comfy_api.latest import io

from ..toy.latent import decode
from ..toy.text import encode_caption

CATEGORY = "sampling/TMD/toy"


class TMDToyTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TMDToyTextEncode", display_name="TMD Toy Text Encode", category=CATEGORY,
            description="The toy world's deterministic text encoder: a caption to Wan-shaped conditioning "
                        "[1, 16, 4096].",
            inputs=[io.String.Input("caption", default="a red square moving left",
                                    tooltip="'a <colour> <shape> moving <direction>': red/green/blue/yellow, "
                                            "square/circle/triangle, left/right/up/down.")],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, caption) -> io.NodeOutput:
        return io.NodeOutput([[encode_caption(caption)[None], {}]])


class TMDToyDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TMDToyDecode", display_name="TMD Toy Decode", category=CATEGORY,
            description="The toy world's exact decoder: a toy latent [B, 16, T, H, W] to B·4T frames of H × W pixels "
                        "(4 per latent frame).",
            inputs=[io.Latent.Input("samples",
                                    tooltip="The sampled latent of a toy-world model (Wan2.1 latent format).")],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        latent = comfy.latent_formats.Wan21().process_in(samples["samples"].float())  # back to the model's z
        return io.NodeOutput(decode(latent).flatten(0, 1))  # [B·T, H, W, 3]


NODES = [TMDToyTextEncode, TMDToyDecode]
