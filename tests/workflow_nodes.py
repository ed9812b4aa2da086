# SPDX-License-Identifier: Apache-2.0
"""What tier 1 knows about the nodes our workflow files use, without ComfyUI, and the checks built on it.

`NODES` records each node's inputs in ComfyUI's order (sockets and widgets) and its output types.
Tier 2 (tests/comfyui/test_workflows_in_comfyui.py) compares this table with the schemas a real
ComfyUI serves on /object_info, so tier 1 can trust it.
"""
from __future__ import annotations

import dataclasses

WIDGET_TYPES = {"INT": (int,), "FLOAT": (int, float), "STRING": (str,), "BOOLEAN": (bool,), "COMBO": (str,)}
WIDGET_KINDS = set(WIDGET_TYPES)
FRONTEND_ONLY = {"Note", "MarkdownNote"}  # drawn by the frontend, never sent to the server
UNKNOWN = "which is neither a pack node nor a known stock node"


@dataclasses.dataclass(frozen=True)
class Input:
    name: str
    kind: str  # a socket type (MODEL, LATENT, ...) or a widget kind (INT, FLOAT, STRING, BOOLEAN, COMBO)
    optional: bool = False
    seed_control: bool = False  # the frontend stores a "control after generate" value after this widget

    @property
    def is_widget(self) -> bool:
        return self.kind in WIDGET_KINDS


@dataclasses.dataclass(frozen=True)
class Node:
    inputs: tuple[Input, ...]
    outputs: tuple[str, ...]
    pack: bool = False  # a node of this pack rather than a stock ComfyUI node

    @property
    def widgets(self) -> list[Input]:
        return [i for i in self.inputs if i.is_widget]

    def input(self, name: str) -> Input | None:
        return next((i for i in self.inputs if i.name == name), None)


def _node(spec: str, outputs: str = "", pack: bool = False) -> Node:
    """`spec` is "name:KIND name:KIND? name:INT!": `?` marks optional, `!` a seed widget."""
    inputs = []
    for token in spec.split():
        name, kind = token.split(":")
        inputs.append(Input(name, kind.rstrip("?!"), optional=kind.endswith("?"), seed_control=kind.endswith("!")))
    return Node(tuple(inputs), tuple(outputs.split()), pack)


NODES: dict[str, Node] = {
    # this pack
    "TMDFlowHeadLoader": _node("head_name:COMBO", "TMD_HEAD", pack=True),
    "TMDApplyFlowHead": _node("model:MODEL head:TMD_HEAD", "MODEL", pack=True),
    "TMDScheduler": _node("model:MODEL steps:INT gamma:FLOAT", "SIGMAS", pack=True),
    "TMDSampler": _node("inner_steps:INT inner_gamma:FLOAT", "SAMPLER", pack=True),
    "TMDToyTextEncode": _node("caption:STRING", "CONDITIONING", pack=True),
    "TMDToyDecode": _node("samples:LATENT", "IMAGE", pack=True),
    # stock ComfyUI
    "UNETLoader": _node("unet_name:COMBO weight_dtype:COMBO", "MODEL"),
    "CLIPLoader": _node("clip_name:COMBO type:COMBO device:COMBO?", "CLIP"),
    "VAELoader": _node("vae_name:COMBO", "VAE"),
    "CLIPTextEncode": _node("text:STRING clip:CLIP", "CONDITIONING"),
    "EmptyHunyuanLatentVideo": _node("width:INT height:INT length:INT batch_size:INT", "LATENT"),
    "ModelSamplingSD3": _node("model:MODEL shift:FLOAT", "MODEL"),
    "LoraLoaderModelOnly": _node("model:MODEL lora_name:COMBO strength_model:FLOAT", "MODEL"),
    "BasicGuider": _node("model:MODEL conditioning:CONDITIONING", "GUIDER"),
    "RandomNoise": _node("noise_seed:INT!", "NOISE"),
    "SamplerCustomAdvanced": _node("noise:NOISE guider:GUIDER sampler:SAMPLER sigmas:SIGMAS latent_image:LATENT",
                                   "LATENT LATENT"),
    "KSampler": _node("model:MODEL seed:INT! steps:INT cfg:FLOAT sampler_name:COMBO scheduler:COMBO "
                      "positive:CONDITIONING negative:CONDITIONING latent_image:LATENT denoise:FLOAT", "LATENT"),
    "VAEDecode": _node("samples:LATENT vae:VAE", "IMAGE"),
    "ImageScaleBy": _node("image:IMAGE upscale_method:COMBO scale_by:FLOAT", "IMAGE"),
    "CreateVideo": _node("images:IMAGE fps:FLOAT audio:AUDIO?", "VIDEO"),
    "SaveVideo": _node("video:VIDEO filename_prefix:STRING format:COMBO codec:COMBO"),
}


def _widget_values(node: Node, values: list) -> dict:
    """Map a UI node's positional widgets_values to input names, skipping the seed-control entries."""
    named, position = {}, 0
    for widget in node.widgets:
        if position >= len(values):
            break
        named[widget.name] = values[position]
        position += 2 if widget.seed_control else 1
    return named


def _expected_widget_count(node: Node) -> tuple[int, int]:
    """Fewest and most widgets_values entries the frontend writes for `node` (optional widgets may be absent)."""
    full = sum(2 if w.seed_control else 1 for w in node.widgets)
    optional = sum(2 if w.seed_control else 1 for w in node.widgets if w.optional)
    return full - optional, full


def check_ui_workflow(workflow: dict) -> list[str]:
    """Problems of a UI-format workflow: unknown node types, wrong widget counts, broken or mistyped links."""
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {link[0]: link for link in workflow["links"]}
    for n in workflow["nodes"]:
        if n["type"] in FRONTEND_ONLY:
            continue
        node = NODES.get(n["type"])
        if node is None:
            problems.append(f"node {n['id']} has type {n['type']!r}, {UNKNOWN}")
            continue
        values = n.get("widgets_values", [])
        fewest, most = _expected_widget_count(node)
        if not fewest <= len(values) <= most:
            problems.append(f"node {n['id']} ({n['type']}) has {len(values)} widget values, expected {fewest}–{most}")
        for slot in n.get("inputs", []):
            spec = node.input(slot["name"])
            if spec is None:
                problems.append(f"node {n['id']} ({n['type']}) has an input {slot['name']!r} the node does not have")
            elif slot.get("link") is None and not spec.optional and not spec.is_widget:
                problems.append(f"node {n['id']} ({n['type']}) input {slot['name']!r} is not connected")
        for spec in node.inputs:
            present = any(s["name"] == spec.name for s in n.get("inputs", []))
            if not spec.is_widget and not spec.optional and not present:
                problems.append(f"node {n['id']} ({n['type']}) lacks its required input {spec.name!r}")
    for link_id, origin, origin_slot, target, target_slot, kind in links.values():
        if origin not in nodes or target not in nodes:
            problems.append(f"link {link_id} joins missing nodes {origin} → {target}")
            continue
        source = NODES.get(nodes[origin]["type"])
        if source is not None and (origin_slot >= len(source.outputs) or source.outputs[origin_slot] != kind):
            problems.append(f"link {link_id} leaves {nodes[origin]['type']} slot {origin_slot}, which is not {kind}")
        target_inputs = nodes[target].get("inputs", [])
        slot = target_inputs[target_slot] if target_slot < len(target_inputs) else None
        if slot is None or slot.get("link") != link_id or slot.get("type") != kind:
            problems.append(f"link {link_id} does not match input {target_slot} of node {target} "
                            f"({nodes[target]['type']})")
    return problems


def ui_to_api(workflow: dict) -> dict:
    """The API prompt the frontend would queue for a UI-format workflow (no subgraphs, no bypassed nodes)."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for n in workflow["nodes"]:
        if n["type"] in FRONTEND_ONLY:
            continue
        node = NODES[n["type"]]
        inputs = _widget_values(node, n.get("widgets_values", []))
        for slot in n.get("inputs", []):
            if slot.get("link") is not None:
                _, origin, origin_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(origin), origin_slot]
        ordered = {i.name: inputs[i.name] for i in node.inputs if i.name in inputs}
        prompt[str(n["id"])] = {"class_type": n["type"], "inputs": ordered,
                                "_meta": {"title": n.get("title", n["type"])}}
    return prompt


def check_api_prompt(prompt: dict) -> list[str]:
    """Problems of an API-format prompt: unknown types, missing or unknown inputs, links to wrong outputs."""
    problems = []
    for node_id, entry in prompt.items():
        node = NODES.get(entry["class_type"])
        if node is None:
            problems.append(f"node {node_id} has type {entry['class_type']!r}, {UNKNOWN}")
            continue
        for spec in node.inputs:
            if spec.name not in entry["inputs"] and not spec.optional:
                problems.append(f"node {node_id} ({entry['class_type']}) lacks its required input {spec.name!r}")
        for name, value in entry["inputs"].items():
            spec = node.input(name)
            if spec is None:
                problems.append(f"node {node_id} ({entry['class_type']}) has an input {name!r} the node does not have")
            elif spec.is_widget:
                bool_for_number = spec.kind != "BOOLEAN" and isinstance(value, bool)
                if not isinstance(value, WIDGET_TYPES[spec.kind]) or bool_for_number:
                    problems.append(f"node {node_id} input {name!r} is {value!r}, not a {spec.kind} value")
            else:
                origin, slot = value
                source = NODES.get(prompt.get(origin, {}).get("class_type"))
                if source is None or slot >= len(source.outputs) or source.outputs[slot] != spec.kind:
                    problems.append(f"node {node_id} input {name!r} is linked to {value}, which gives no {spec.kind}")
    return problems
