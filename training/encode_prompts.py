# SPDX-License-Identifier: Apache-2.0
"""Prompt embeddings for `make_data`: a text file of prompts in, their umT5 contexts out.

    python -m comfyui_tmd.training.encode_prompts prompts.txt --out prompts.safetensors \\
        --text-encoder umt5_xxl_fp8_e4m3fn_scaled.safetensors [--comfyui /path/to/ComfyUI]
    python -m comfyui_tmd.training.encode_prompts prompts.txt --out prompts.safetensors --encoder transformers \\
        --text-encoder umt5_xxl_fp16.safetensors --tokenizer umt5-xxl-tokenizer/ [--device cuda --dtype bf16]

One prompt a line (blank lines are skipped). The output file holds
    context           [P, 512, W]   one row per prompt, in file order
    negative_context  [1, 512, W]   the negative prompt (Wan2.1's default, in Chinese, unless --negative is given)
and metadata `prompts` (JSON list), `negative_prompt` and `text_encoder`. W is the encoder's width: 4096 for
umT5-XXL, the width Wan takes.

Each context is laid out as official Wan2.1 hands it to its DiT: the encoder's last hidden state of the
prompt's real tokens (the text and the end-of-sequence token, computed with padding masked out), then zero
rows up to 512. A prompt longer than 512 tokens is cut as Wan's tokenizer cuts it (its first 511 tokens and the
end token), with one warning for the whole file: the data then match what Wan was trained with (ComfyUI alone
would not cut; its context grows past 512 rows). A context is 8 MiB in fp32 (4 MiB with `--save-dtype bf16`)
and all are held in memory until the file is written: split a long prompt list into several files.

Two encoders (`--encoder`):
  comfyui       ComfyUI's own umT5 (`comfy.sd.load_clip` with the WAN type, `CLIP.tokenize` and
                `encode_from_tokens_scheduled`, as CLIPLoader and CLIPTextEncode run it), from the
                umt5_xxl_*.safetensors file (bf16, fp16 or fp8 scaled) and the checkout --comfyui or COMFYUI_PATH
                names. The contexts are then exactly what the user's ComfyUI graph feeds the student, prompt
                syntax included ("(word:1.2)" weights). See `umt5_comfyui.py` for what ComfyUI returns.
  transformers  Hugging Face `UMT5EncoderModel` and the umT5 tokenizer, run as Wan's official encoder runs
                (`umt5_transformers.py`); needs the `prompts` extra.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Protocol, Sequence

import torch

from ..tmd_core.command_line import argument_parser, run_command
from ..tmd_core.safe_files import write_safetensors
from ..tmd_core.wan_config import UMT5_TOKENS
from .errors import PromptEncodingError

# Wan2.1's `sample_neg_prompt` (wan/configs/shared_config.py), the negative prompt of its own sampling scripts
WAN_NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，"
                       "最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，"
                       "画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，"
                       "杂乱的背景，三条腿，背景人很多，倒着走")
SAVE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class PromptEncoder(Protocol):
    """What `encode_prompts` needs of a text encoder."""
    width: int  # the width of each hidden state, so of the stored context

    def tokenize(self, text: str) -> list:
        """The prompt's tokens, ending with the end-of-sequence token, unpadded and not yet cut."""

    def encode(self, batch: Sequence[list]) -> list[torch.Tensor]:
        """The last hidden state of each token list's own tokens: one [len(tokens), width] tensor per list."""


def read_prompts(path: str | os.PathLike) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped; one sentence for a missing, binary or empty file."""
    path = Path(path)
    if not path.is_file():
        raise PromptEncodingError(f"no prompt file at {path}.")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: drop the byte-order mark some editors write
    except UnicodeDecodeError as err:
        raise PromptEncodingError(f"{path.name} is not a UTF-8 text file of prompts ({err.reason} at byte "
                                  f"{err.start}); give one prompt a line.") from err
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise PromptEncodingError(f"{path.name} holds no prompts: it is empty or every line is blank.")
    return prompts


def fit_tokens(tokens: list) -> tuple[list, bool]:
    """Tokens cut to 512 as Wan's tokenizer cuts (the first 511 and the end token), and whether they were cut."""
    if len(tokens) <= UMT5_TOKENS:
        return tokens, False
    return tokens[:UMT5_TOKENS - 1] + tokens[-1:], True


def _progress_bar(total: int, enabled: bool):
    """A tqdm bar over prompts when it is wanted and tqdm is installed (else None: no bar)."""
    if not enabled or importlib.util.find_spec("tqdm") is None:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc="encoding prompts", unit="prompt", dynamic_ncols=True)


def encode_prompts(encoder: PromptEncoder, prompts: Sequence[str], batch: int = 8, progress: bool = False,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, list[int]]:
    """Context [P, 512, encoder.width] in `dtype`: row p holds prompt p's hidden states, zeros after its real
    tokens (Wan's padding, written into a zero tensor so no padded copy is made). Also returns the indices of
    the prompts that were cut to 512 tokens."""
    tokens, cut = [], []
    for index, text in enumerate(prompts):
        fitted, was_cut = fit_tokens(encoder.tokenize(text))
        tokens.append(fitted)
        if was_cut:
            cut.append(index)
    context = torch.zeros(len(prompts), UMT5_TOKENS, encoder.width, dtype=dtype)  # [P, 512, W]
    bar = _progress_bar(len(prompts), progress)
    for start in range(0, len(prompts), batch):
        for row, states in enumerate(encoder.encode(tokens[start:start + batch]), start):  # states [n, W]
            context[row, :states.shape[0]] = states.to(dtype)
        if bar is not None:
            bar.update(min(batch, len(prompts) - start))
    if bar is not None:
        bar.close()
    return context, cut


def warn_cut(prompts: Sequence[str], cut: Sequence[int]) -> None:
    """One warning line, on stderr, for all the prompts that were cut to 512 tokens."""
    if cut:
        first = prompts[cut[0]]
        print(f"warning: {len(cut)} of {len(prompts)} prompts are longer than {UMT5_TOKENS} tokens and were cut to "
              f"their first {UMT5_TOKENS - 1} and the end token, as Wan2.1's encoder cuts them (the first: "
              f"{first[:60]!r}...).", file=sys.stderr)


def write_prompt_file(path: str | os.PathLike, context: torch.Tensor, negative_context: torch.Tensor,
                      prompts: Sequence[str], negative_prompt: str, text_encoder: str) -> Path:
    """The prompt file `make_data` reads, written atomically."""
    metadata = {"prompts": json.dumps(list(prompts), ensure_ascii=False), "negative_prompt": negative_prompt,
                "text_encoder": text_encoder}
    return write_safetensors({"context": context, "negative_context": negative_context}, path, metadata)


def open_encoder(args) -> PromptEncoder:
    """The encoder the command's options name (each path imports its library only here)."""
    if args.encoder == "comfyui":
        if args.dtype is not None:
            raise PromptEncodingError("--dtype applies to --encoder transformers only; ComfyUI runs umT5 in the "
                                      "dtype of the file's weights, as its CLIPLoader does.")
        comfyui = args.comfyui or os.environ.get("COMFYUI_PATH")
        if not comfyui:
            raise PromptEncodingError("--encoder comfyui needs a ComfyUI checkout: give --comfyui PATH or set "
                                      "COMFYUI_PATH (or use --encoder transformers).")
        from .umt5_comfyui import ComfyUIUMT5
        return ComfyUIUMT5(args.text_encoder, comfyui, args.device)
    if args.tokenizer is None:
        raise PromptEncodingError("--encoder transformers needs --tokenizer: the umT5 tokenizer's folder "
                                  "(google/umt5-xxl's, or a folder holding spiece.model).")
    from .umt5_transformers import TransformersUMT5
    dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    return TransformersUMT5(args.text_encoder, args.tokenizer, args.device, dtype)


def main(argv: list[str] | None = None) -> Path:
    parser = argument_parser("Encode a text file of prompts (one a line) with umT5 into the prompt file make_data "
                             "reads.")
    parser.add_argument("prompts", type=Path, help="UTF-8 text file, one prompt a line; blank lines are skipped")
    parser.add_argument("--out", required=True, type=Path, help="the safetensors file to write")
    parser.add_argument("--encoder", choices=("comfyui", "transformers"), default="comfyui",
                        help="ComfyUI's umT5 from a ComfyUI checkout, or Hugging Face transformers")
    parser.add_argument("--text-encoder", required=True, type=Path,
                        help="umT5 weights: a umt5_xxl_*.safetensors file (comfyui: bf16, fp16 or fp8 scaled; "
                             "transformers: not fp8 scaled), or for transformers a Hugging Face model folder")
    parser.add_argument("--tokenizer", type=Path,
                        help="transformers: the umT5 tokenizer folder (comfyui reads the one stored in the file)")
    parser.add_argument("--comfyui",
                        help="ComfyUI checkout for --encoder comfyui (default: $COMFYUI_PATH)")
    parser.add_argument("--negative", default=WAN_NEGATIVE_PROMPT, help="the negative prompt")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where umT5 runs (comfyui: 'cpu' puts ComfyUI in CPU mode, otherwise ComfyUI "
                             "chooses as it does in the app)")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"),
                        help="transformers: umT5's weight dtype (default: bf16 on CUDA as Wan runs it, else fp32)")
    parser.add_argument("--batch", type=int, default=8,
                        help="transformers: prompts encoded together (comfyui encodes one at a time, as "
                             "CLIPTextEncode does)")
    parser.add_argument("--save-dtype", choices=sorted(SAVE_DTYPES), default="fp32",
                        help="dtype of the stored contexts (bf16 halves the file: 4 MiB a prompt)")
    args = parser.parse_args(argv)
    if args.batch < 1:
        raise PromptEncodingError(f"--batch {args.batch} must be at least 1.")
    prompts = read_prompts(args.prompts)
    encoder = open_encoder(args)
    dtype = SAVE_DTYPES[args.save_dtype]
    with torch.no_grad():
        context, cut = encode_prompts(encoder, prompts, args.batch, progress=len(prompts) > 1, dtype=dtype)
        negative_context, negative_cut = encode_prompts(encoder, [args.negative], dtype=dtype)
    warn_cut(prompts, cut)
    warn_cut([args.negative], negative_cut)
    path = write_prompt_file(args.out, context, negative_context, prompts, args.negative,
                             f"{args.encoder}: {args.text_encoder.name}")
    print(f"wrote {len(prompts)} prompt contexts [{len(prompts)}, {UMT5_TOKENS}, {encoder.width}] to {path}")
    return path


if __name__ == "__main__":
    raise SystemExit(run_command(main))
