# SPDX-License-Identifier: Apache-2.0
"""A tiny umT5 for the prompt-encoding tests: a sentencepiece tokenizer trained here on a few sentences, and a
random Hugging Face UMT5 encoder saved in the layout of ComfyUI's umt5_xxl_*.safetensors (tokenizer inside)."""
import io

import torch

from comfyui_tmd.tmd_core.safe_files import write_safetensors

VOCAB = 160  # the model's embedding rows; the tokenizer uses fewer
CORPUS = ["a red circle moves left across the frame", "a blue square drifts slowly to the right",
          "the green triangle jumps over a yellow star", "two small dots spin around each other",
          "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量",
          "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，背景人很多，倒着走"]


def train_spiece(folder):
    """A sentencepiece unigram model with umT5's special ids (pad 0, end 1, unknown 2), as folder/spiece.model."""
    import sentencepiece
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 8), model_writer=model, vocab_size=VOCAB - 32, pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    return folder


def random_umt5(width=32, layers=2, heads=4, head_dim=8, ffn=24, seed=0):
    """A UMT5EncoderModel with every weight random, layer norms included (no term hides behind a one)."""
    from transformers import UMT5Config, UMT5EncoderModel
    config = UMT5Config(vocab_size=VOCAB, d_model=width, d_kv=head_dim, d_ff=ffn, num_layers=layers, num_heads=heads,
                        feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    torch.manual_seed(seed)
    model = UMT5EncoderModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = p.shape[-1] ** -0.5
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "layer_norm" in name else scale * torch.randn_like(p))
        model.shared.weight.mul_(4.0)  # T5 does not rescale its embeddings; keep hidden states far from zero
    return model.eval()


def save_umt5(model, path, tokenizer_folder=None, **extra):
    """The encoder's weights as one safetensors file in ComfyUI's layout (no tied copy of the embedding), with
    the sentencepiece model as the `spiece_model` byte tensor when a tokenizer folder is given."""
    tensors = {k: v for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    if tokenizer_folder is not None:
        data = (tokenizer_folder / "spiece.model").read_bytes()
        tensors["spiece_model"] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    tensors.update(extra)
    return write_safetensors(tensors, path)


def reference_states(model64, ids):
    """A float64 copy of the encoder (`copy.deepcopy(model).double()`) on one token list without padding or
    mask, what the padded, masked run must match: [len(ids), width]."""
    with torch.no_grad():
        return model64(input_ids=torch.tensor([ids])).last_hidden_state[0]
