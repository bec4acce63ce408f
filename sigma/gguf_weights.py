"""A Llama-family GGUF file read as a Hugging Face checkpoint: config, float32 weights, tokenizer.

Quantized tensors (Q4_1, Q8_0, ...) are de-quantized with the ``gguf`` package, so the weights are
the quantized model's, in float32, not the original full-precision ones. llama.cpp's converter
permutes the rows of ``attn_q`` and ``attn_k`` per head from the rotate-half RoPE layout
(first half of a head's dimensions, then the second) to interleaved pairs; ``unpermute_rope_rows``
undoes that, as ``transformers``' GGUF loader does, so the weights fit rotate-half RoPE again.
The tokenizer (and its chat template) is rebuilt by ``transformers``' GGUF tokenizer converter.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_LAYER = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)$")


def _import_gguf():
    try:
        import gguf
    except ImportError:
        raise ImportError("reading a GGUF file needs the gguf package: pip install 'gguf>=0.10,<1'") from None
    return gguf


def hf_tensor_name(gguf_name: str) -> str:
    match = _LAYER.match(gguf_name)
    if match:
        layer, part, kind = match.groups()
        if part not in _LAYER_NAMES:
            raise ValueError(f"GGUF tensor {gguf_name!r} is not part of a Llama block")
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    base, _, kind = gguf_name.rpartition(".")
    if base not in _TOP_NAMES:
        raise ValueError(f"GGUF tensor {gguf_name!r} is not part of a Llama model")
    return f"{_TOP_NAMES[base]}.{kind}"


def unpermute_rope_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of each head from llama.cpp's interleaved RoPE pairs back to rotate-half order."""
    head_dim = weight.shape[0] // n_heads
    return weight.reshape(n_heads, head_dim // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _field(reader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_gguf(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, str], dict[str, Any]]:
    """(config in Hugging Face Llama keys, float32 tensors by HF name, tokenizer files, quantization info).

    The tokenizer files are ``tokenizer.json`` and ``tokenizer_config.json`` (special tokens and
    the chat template), as ``transformers`` rebuilds them from the GGUF metadata.
    """
    gguf = _import_gguf()
    path = Path(path)
    reader = gguf.GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path} holds a {arch!r} model; only Llama-family GGUF files (general.architecture llama) convert")
    n_heads = int(_field(reader, "llama.attention.head_count"))
    n_kv_heads = int(_field(reader, "llama.attention.head_count_kv", n_heads))
    d_model = int(_field(reader, "llama.embedding_length"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": d_model,
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "head_dim": int(_field(reader, "llama.rope.dimension_count", d_model // n_heads)),
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, "llama.rope.freq_base", 10_000.0)),
        "max_position_embeddings": int(_field(reader, "llama.context_length")),
        "rope_scaling": None if _field(reader, "llama.rope.scaling.type") in (None, "none") else _field(reader, "llama.rope.scaling.type"),
    }
    tensors: dict[str, Tensor] = {}
    types: dict[str, int] = {}
    for tensor in reader.tensors:
        name = hf_tensor_name(tensor.name)
        weight = gguf.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        if ".attn_q." in tensor.name:
            weight = unpermute_rope_rows(weight, n_heads)
        elif ".attn_k." in tensor.name:
            weight = unpermute_rope_rows(weight, n_kv_heads)
        tensors[name] = torch.from_numpy(np.ascontiguousarray(weight))
        kind = tensor.tensor_type.name
        types[kind] = types.get(kind, 0) + 1
    config["vocab_size"] = tensors["model.embed_tokens.weight"].shape[0]
    config["tie_word_embeddings"] = "lm_head.weight" not in tensors
    quantization = {"gguf_tensor_types": dict(sorted(types.items())), "dequantized_to": "float32"}
    return config, tensors, _gguf_tokenizer(path), quantization


def _gguf_tokenizer(path: Path) -> dict[str, str]:
    import json

    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ImportError("rebuilding a GGUF file's tokenizer needs transformers: pip install 'sigma-lm[llm]'") from None
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    settings = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token, "unk_token": tokenizer.unk_token,
        "chat_template": tokenizer.chat_template,
        "add_bos_token": bool(getattr(tokenizer, "add_bos_token", False)),
        "clean_up_tokenization_spaces": False,
    }
    return {"tokenizer.json": tokenizer.backend_tokenizer.to_str(), "tokenizer_config.json": json.dumps(settings, indent=2)}
