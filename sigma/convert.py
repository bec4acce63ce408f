"""Convert a Llama-family GQA checkpoint into a Sigma (DiffQKV) checkpoint with fewer K heads.

A GQA model with ``n_kv`` KV heads becomes a Sigma model with the same query heads, ``n_v = n_kv``
V heads and ``n_k = N`` K heads, ``N`` dividing ``n_kv``. The K heads are merged the way GQA
uptraining merges KV heads (Ainslie et al. 2023, arXiv 2305.13245): the ``k_proj`` rows of each
group of ``n_kv / N`` consecutive KV heads are mean-pooled. RoPE is linear, so pooling the rows
equals pooling the rotated keys at every position. Everything else is kept as it is, with no
augmented Q. With ``N = n_kv`` the result computes what the source computes.

The result is a checkpoint folder like one ``sigma train`` writes (``model.safetensors``,
``state.json`` at step 0, ``tokenizer.json``), plus ``tokenizer_config.json`` (special tokens and
chat template) and ``convert.json``, the manifest: the source, its sha256, what was de-quantized
and how the config was mapped. ``sigma train --init-from``, ``sigma generate``, ``sigma export``
and the ``sigma`` backend read it as they read any checkpoint.

Sources: a Hugging Face folder (``config.json``, ``*.safetensors``, tokenizer files) of a
``LlamaForCausalLM``, a Llama-family GGUF file (``sigma.gguf_weights``; quantized tensors are
de-quantized to float32), or the name of a packaged model (``smollm2``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_model
from torch import Tensor

from sigma.config import ModelConfig
from sigma.model import Transformer
from sigma.shards import sha256_file
from sigma.tokenizer import TOKENIZER_FILE

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
MANIFEST_FILE = "convert.json"


@dataclass
class SourceModel:
    config: dict[str, Any]  # Hugging Face Llama config keys
    tensors: dict[str, Tensor]  # by Hugging Face name, float32
    tokenizer_files: dict[str, str]  # tokenizer.json and tokenizer_config.json
    description: dict[str, Any]  # where it came from: path, format, sha256, quantization


def load_source(src: str | Path) -> SourceModel:
    """A Hugging Face folder, a GGUF file, or a packaged model name (``smollm2``)."""
    from sigma.backends.packaged import packaged_model

    packaged = packaged_model(str(src)) if not Path(src).exists() else None
    path = packaged[0] / packaged[1] if packaged else Path(src)
    if not path.exists():
        raise FileNotFoundError(f"{src}: no such folder or GGUF file (nor a packaged model name such as smollm2)")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"{path}: a source file must be a .gguf; a Hugging Face model is a folder")
        from sigma.gguf_weights import read_gguf

        config, tensors, tokenizer_files, quantization = read_gguf(path)
        description = {"path": str(src) if packaged else str(path), "file": path.name, "format": "gguf",
                       "sha256": sha256_file(path), **quantization}
        return SourceModel(config, tensors, tokenizer_files, description)
    return _load_hf_folder(path)


def _load_hf_folder(folder: Path) -> SourceModel:
    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face model folder")
    weight_files = sorted(folder.glob("*.safetensors"))
    if not weight_files:
        raise FileNotFoundError(f"{folder} has no *.safetensors weights (PyTorch .bin files are not read)")
    config = json.loads(config_file.read_text())
    tensors: dict[str, Tensor] = {}
    for file in weight_files:
        tensors.update({name: t.float() for name, t in load_file(str(file)).items()})
    if not (folder / TOKENIZER_FILE).exists():
        raise FileNotFoundError(f"{folder} has no tokenizer.json (a fast tokenizer is needed)")
    tokenizer_files = {TOKENIZER_FILE: (folder / TOKENIZER_FILE).read_text()}
    settings = json.loads((folder / TOKENIZER_CONFIG_FILE).read_text()) if (folder / TOKENIZER_CONFIG_FILE).exists() else {}
    if (folder / "chat_template.jinja").exists():  # newer transformers save the template beside
        settings["chat_template"] = (folder / "chat_template.jinja").read_text()
    tokenizer_files[TOKENIZER_CONFIG_FILE] = json.dumps(settings, indent=2)
    hashed = [*weight_files, config_file, folder / TOKENIZER_FILE]
    digest = hashlib.sha256()
    for file in hashed:  # the folder's hash: each file's name and sha256, in order
        digest.update(f"{file.name} {sha256_file(file)}\n".encode())
    description = {"path": str(folder), "format": "huggingface", "sha256": digest.hexdigest(),
                   "sha256_of": "lines 'NAME SHA256' of " + ", ".join(f.name for f in hashed),
                   "dtype": str(next(iter(load_file(str(weight_files[0])).values())).dtype).removeprefix("torch.")}
    return SourceModel(config, tensors, tokenizer_files, description)


def sigma_config(hf: dict[str, Any], k_heads: int) -> ModelConfig:
    """The Sigma shape of a Llama config with ``k_heads`` K heads; anything Sigma's decoder does
    not compute (biases, RoPE scaling, another activation) is refused rather than dropped."""
    architectures = hf.get("architectures") or []
    if hf.get("model_type", "llama") != "llama" and "LlamaForCausalLM" not in architectures:
        raise ValueError(f"not a Llama-family model (model_type {hf.get('model_type')!r}, architectures {architectures})")
    refused = {
        "attention_bias": bool(hf.get("attention_bias")), "mlp_bias": bool(hf.get("mlp_bias")),
        "rope_scaling": hf.get("rope_scaling") not in (None, {})
        or (hf.get("rope_parameters") or {}).get("rope_type", "default") != "default",
        "hidden_act": hf.get("hidden_act", "silu") != "silu",
    }
    if any(refused.values()):
        raise ValueError(f"the source uses {', '.join(k for k, v in refused.items() if v)}, which Sigma's decoder does not compute")
    n_q = int(hf["num_attention_heads"])
    n_kv = int(hf.get("num_key_value_heads") or n_q)
    if k_heads < 1 or n_kv % k_heads:
        raise ValueError(f"--k-heads {k_heads} must divide the source's {n_kv} KV heads")
    head_dim = int(hf.get("head_dim") or hf["hidden_size"] // n_q)
    rope_theta = hf.get("rope_theta", (hf.get("rope_parameters") or {}).get("rope_theta", 10_000.0))
    return ModelConfig(
        vocab_size=int(hf["vocab_size"]), n_layers=int(hf["num_hidden_layers"]), d_model=int(hf["hidden_size"]),
        n_q_heads=n_q, n_k_heads=k_heads, n_v_heads=n_kv, d_qk_head=head_dim, d_v_head=head_dim, q_aug_dim=0,
        d_ffn=int(hf["intermediate_size"]), rope_theta=float(rope_theta), norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        max_seq_len=int(hf.get("max_position_embeddings", 2048)), init_std=float(hf.get("initializer_range", 0.02)),
    )


def pool_key_heads(weight: Tensor, n_kv: int, k_heads: int) -> Tensor:
    """k_proj (n_kv * d, d_model) -> (k_heads * d, d_model): the mean of each group's rows."""
    head_dim = weight.shape[0] // n_kv
    return weight.view(k_heads, n_kv // k_heads, head_dim, -1).mean(dim=1).reshape(k_heads * head_dim, -1)


_BLOCK_NAMES = {
    "input_layernorm.weight": "attention_norm.weight",
    "self_attn.q_proj.weight": "attention.q_proj.weight",
    "self_attn.k_proj.weight": "attention.k_proj.weight",
    "self_attn.v_proj.weight": "attention.v_proj.weight",
    "self_attn.o_proj.weight": "attention.o_proj.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "feed_forward.w_gate.weight",
    "mlp.up_proj.weight": "feed_forward.w_up.weight",
    "mlp.down_proj.weight": "feed_forward.w_down.weight",
}


def sigma_weights(tensors: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Hugging Face Llama tensors renamed to Sigma's, with k_proj pooled to ``config.n_k_heads``."""
    out: dict[str, Tensor] = {"tok_embeddings.weight": tensors["model.embed_tokens.weight"],
                              "norm.weight": tensors["model.norm.weight"]}
    out["output.weight"] = out["tok_embeddings.weight"] if config.tie_embeddings else tensors["lm_head.weight"]
    for layer in range(config.n_layers):
        for hf_name, name in _BLOCK_NAMES.items():
            key = f"model.layers.{layer}.{hf_name}"
            if key not in tensors:
                raise KeyError(f"the source has no {key}")
            weight = tensors[key]
            if name == "attention.k_proj.weight":
                weight = pool_key_heads(weight, config.n_v_heads, config.n_k_heads)
            out[f"layers.{layer}.{name}"] = weight
    return out


def converted_model(source: SourceModel, k_heads: int) -> Transformer:
    """The Sigma model of ``source`` with ``k_heads`` K heads, in float32."""
    config = sigma_config(source.config, k_heads)
    model = Transformer(config)
    model.load_state_dict(sigma_weights(source.tensors, config), strict=True)
    return model


def convert(src: str | Path, k_heads: int, out_dir: str | Path, source: SourceModel | None = None) -> Path:
    """Write the converted checkpoint folder ``out_dir`` (atomically) and return it.

    ``source`` (from ``load_source(src)``) saves reading the source again when converting it
    several times, e.g. for several ``k_heads``.
    """
    source = source or load_source(src)
    model = converted_model(source, k_heads)
    config = model.config
    group = config.n_v_heads // config.n_k_heads
    manifest = {
        "source": source.description,
        "source_config": source.config,
        "k_heads": k_heads,
        "mapping": {
            "q_heads": config.n_q_heads, "v_heads": config.n_v_heads, "k_heads": config.n_k_heads,
            "k_pooling": "identity" if group == 1 else f"mean of k_proj rows over each group of {group} KV heads",
            "augmented_q": False, "rope_theta": config.rope_theta, "norm_eps": config.norm_eps,
            "tie_embeddings": config.tie_embeddings, "head_dim": config.d_qk_head,
        },
        "kv_cache_values_per_token_per_layer": {"source": 2 * config.n_v_heads * config.d_v_head,
                                                "converted": config.kv_cache_values_per_token},
    }
    state = {"step": 0, "tokens": 0, "model_config": config.to_dict(), "converted_from": source.description,
             "init_from": None}

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    for name, text in source.tokenizer_files.items():
        (tmp / name).write_text(text)
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
