"""Export a checkpoint as a Hugging Face folder that ``transformers`` loads with ``trust_remote_code``.

The folder holds ``config.json`` (with an ``auto_map`` to the bundled code), ``model.safetensors``,
``modeling_sigma.py`` (a copy of ``sigma/hf_modeling.py``, which needs only torch and
transformers), the tokenizer files and ``generation_config.json``. Written under a temporary name
and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from sigma.chat_template import load_chat_settings
from sigma.checkpoint import load_weights, read_checkpoint
from sigma.config import ModelConfig
from sigma.model import Transformer
from sigma.tokenizer import end_of_text_id, load_tokenizer

MODELING_FILE = "modeling_sigma.py"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hf_config(config: ModelConfig, eos_id: int, dtype: str) -> dict:
    return {
        "architectures": ["SigmaForCausalLM"],
        "model_type": "sigma_diffqkv",
        "auto_map": {
            "AutoConfig": f"{MODELING_FILE[:-3]}.SigmaConfig",
            "AutoModelForCausalLM": f"{MODELING_FILE[:-3]}.SigmaForCausalLM",
        },
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ffn,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_q_heads,
        "num_key_heads": config.n_k_heads,
        "num_value_heads": config.n_v_heads,
        "qk_head_dim": config.d_qk_head,
        "v_head_dim": config.d_v_head,
        "q_aug_dim": config.q_aug_dim,
        "rope_theta": config.rope_theta,
        "rms_norm_eps": config.norm_eps,
        "max_position_embeddings": config.max_seq_len,
        "initializer_range": config.init_std,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": eos_id,
        "use_cache": True,
        "torch_dtype": dtype,
    }


def hf_weight_name(name: str) -> str:
    if name == "output.weight":
        return "lm_head.weight"
    if name.startswith("tok_embeddings."):
        return "model.embed_tokens." + name.removeprefix("tok_embeddings.")
    return "model." + name


def export_hf(checkpoint: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    found = read_checkpoint(checkpoint)
    config = ModelConfig.from_dict(found.state["model_config"])
    model = Transformer(config)
    load_weights(found, model)
    tokenizer = load_tokenizer(found.path / "tokenizer.json")
    eos_id = end_of_text_id(tokenizer)
    eos = tokenizer.id_to_token(eos_id)

    tensors = {}
    for name, tensor in model.state_dict().items():
        if config.tie_embeddings and name == "output.weight":
            continue  # tied: transformers rebuilds lm_head from the embedding
        tensors[hf_weight_name(name)] = tensor.to(DTYPES[dtype]).contiguous()

    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(Path(__file__).with_name("hf_modeling.py"), tmp / MODELING_FILE)
    _write_json(tmp / "config.json", hf_config(config, eos_id, dtype))
    special = {"bos_token": eos, "eos_token": eos, "pad_token": eos}
    chat = load_chat_settings(found.path)  # a converted model's own special tokens and chat template
    if chat is not None:
        special.update(chat.special_tokens)
    end_ids = sorted({eos_id, tokenizer.token_to_id(special["eos_token"]) or eos_id})
    _write_json(tmp / "generation_config.json", {
        "bos_token_id": eos_id, "eos_token_id": end_ids if len(end_ids) > 1 else eos_id, "pad_token_id": eos_id,
    })
    tokenizer.save(str(tmp / "tokenizer.json"))
    _write_json(tmp / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": None, **special,
        "model_max_length": config.max_seq_len,
        "padding_side": "left",  # decoder-only: prompts end where generation starts
        "clean_up_tokenization_spaces": False,
        **({"chat_template": chat.template} if chat is not None and chat.template else {}),
    })
    _write_json(tmp / "special_tokens_map.json", special)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")
