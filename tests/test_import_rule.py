# SPDX-License-Identifier: Apache-2.0
"""The pack's one import rule, read from the source with `ast` (every import statement, also those inside
functions): the core, kernels, toy world, training and benchmarks never import ComfyUI (the offline tools that
use a ComfyUI checkout do so inside a function of training/comfyui_checkout.py); only the offline tools
(training/, benchmarks/) and the tests import training/; nodes/ uses only tmd_core/, tmd_kernels/ and toy/ of the
pack's own packages."""
import ast
import importlib.metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK = "comfyui_tmd"  # the import name of the repository root
# top-level modules of a ComfyUI checkout; `nodes` here is ComfyUI's, the pack's own is always relative
COMFYUI = {"comfy", "comfy_api", "comfy_api_nodes", "comfy_config", "comfy_execution", "comfy_extras", "app",
           "execution", "folder_paths", "latent_preview", "node_helpers", "nodes", "server", "cuda_malloc"}
NO_COMFYUI = ("tmd_core", "tmd_kernels", "toy", "training", "benchmarks")
NODES_MAY_USE = {"nodes", "tmd_core", "tmd_kernels", "toy"}
# import ComfyUI inside a function, never at module level: training/comfyui_checkout.py imports it from the checkout
# --comfyui names for the offline tools that use it (encode_prompts' umT5, the overhead benchmark, validation's
# `comfyui:<file>` decoder, which then imports the ComfyUI modules it uses)
COMFYUI_INSIDE_FUNCTIONS = {"training/comfyui_checkout.py", "training/decoders.py"}
MAY_IMPORT_TRAINING = ("training", "benchmarks", "tests")  # the offline tools; never nodes/, the core or the toy


def _module_level(tree: ast.Module) -> set[int]:
    """ids of the import statements that run when the module is imported (not inside a function)."""
    ids, stack = set(), list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            ids.add(id(node))
        stack.extend(ast.iter_child_nodes(node))
    return ids


def imports(path: str, source: str) -> list[tuple[str, str, int, bool]]:
    """(kind, name, line, at module level) per imported module, also inside functions: kind "pack" with the
    pack's subpackage ("" for the root package itself), or "external" with the top-level module name."""
    tree = ast.parse(source)
    package = path.split("/")[:-1]  # the package a module is in; an __init__.py is in its own folder
    top = _module_level(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            names = [("pack", target[0])] if target else [("pack", alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == PACK:
            names = [("pack", alias.name) for alias in node.names]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            names = []
            for parts in (module.split(".") for module in modules):
                names.append(("pack", parts[1] if len(parts) > 1 else "") if parts[0] == PACK
                             else ("external", parts[0]))
        else:
            continue
        found += [(kind, name, node.lineno, id(node) in top) for kind, name in names]
    return found


def violations(path: str, source: str) -> list[str]:
    """The rule's breaches in one file, as 'path:line: what'."""
    area = path.split("/")[0] if "/" in path else ""
    found = []
    for kind, name, line, module_level in imports(path, source):
        where = f"{path}:{line}"
        comfy = kind == "external" and name in COMFYUI
        if comfy and area in NO_COMFYUI and (module_level or path not in COMFYUI_INSIDE_FUNCTIONS):
            found.append(f"{where}: {area}/ imports ComfyUI module {name!r}")
        if kind == "pack" and name == "training" and area not in MAY_IMPORT_TRAINING:
            found.append(f"{where}: only {', '.join(f'{a}/' for a in MAY_IMPORT_TRAINING)} may import training/")
        if kind == "pack" and area == "nodes" and name not in NODES_MAY_USE:
            found.append(f"{where}: nodes/ imports the pack's {name or 'root'}; it may use only "
                         f"{', '.join(sorted(NODES_MAY_USE - {'nodes'}))}")
    return found


def pack_files() -> list[str]:
    """The repository's Python files outside tests/, hidden folders and build outputs."""
    files = []
    for file in REPO.rglob("*.py"):
        parts = file.relative_to(REPO).parts
        if parts[0] in ("tests", "build", "dist") or any(p.startswith(".") or p.endswith(".egg-info") for p in parts):
            continue
        files.append("/".join(parts))
    return sorted(files)


def test_the_scan_sees_every_package():
    areas = {path.split("/")[0] for path in pack_files()}
    assert {"tmd_core", "tmd_kernels", "toy", "training", "benchmarks", "nodes", "__init__.py"} <= areas


def test_every_file_keeps_the_import_rule():
    found = [v for path in pack_files() for v in violations(path, (REPO / path).read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path, source", [
    ("tmd_core/x.py", "import comfy.sd\n"),
    ("toy/x.py", "def f():\n    import folder_paths\n"),
    ("training/x.py", "from comfy_api.latest import io\n"),
    ("tmd_kernels/x.py", "import nodes\n"),
    ("benchmarks/comfy_overhead.py", "def run():\n    import comfy.sample\n"),
    ("training/comfyui_checkout.py", "import comfy.sd\n"),
    ("nodes/x.py", "from ..training import stage1\n"),
    ("toy/x.py", "from comfyui_tmd.training.config import load_config\n"),
    ("tmd_kernels/x.py", "from comfyui_tmd import training\n"),
    ("__main__.py", "from .training import toy_world\n"),
    ("nodes/x.py", "from ..benchmarks import flops\n"),
    ("nodes/x.py", "from .. import training\n"),
])
def test_the_rule_catches_each_kind_of_breach(path, source):
    assert violations(path, source)


@pytest.mark.parametrize("path, source", [
    ("nodes/x.py", "import comfy.sd\nfrom ..tmd_core.sampler import sample_euler\nfrom . import toy_nodes\n"),
    ("training/x.py", "from ..tmd_core import guidance\nfrom .config import load_config\n"),
    ("training/comfyui_checkout.py", "def import_comfyui():\n    import comfy.sample\n"),
    ("benchmarks/x.py", "from ..training.comfyui_checkout import import_comfyui\n"),
    ("toy/x.py", "from ..tmd_core.sampler import generate_tmd\n"),
])
def test_the_rule_allows_what_the_layout_intends(path, source):
    assert not violations(path, source)


def test_no_package_folder_shadows_an_installed_module():
    # `python -m pytest` and `python -m comfyui_tmd...` from the repository root put the root on sys.path, so a
    # folder named like an installed module hides it (transformers imports the `kernels` distribution; a
    # `kernels/` folder here once broke every diffusers and transformers import).
    installed = importlib.metadata.packages_distributions()
    folders = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    clashes = {name: installed[name] for name in folders & set(installed)}
    assert not clashes, f"package folders shadow installed modules: {clashes}"
