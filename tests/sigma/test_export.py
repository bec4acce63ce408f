"""The exported folder loads in transformers with trust_remote_code and computes what sigma computes."""

import ast
import json

import pytest
import torch

from sigma.checkpoint import load_weights, read_checkpoint
from sigma.config import ModelConfig
from sigma.export import export_hf
from sigma.model import Transformer
from sigma.train import TrainConfig, train

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def checkpoint(request, curated_logs, tokenizer_file, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        model={"preset": "sigma-tiny", "tie_embeddings": request.param}, seq_len=64, batch_size=4, max_steps=30,
        lr=3e-3, warmup_steps=5, held_out_fraction=0.0, save_every=30,
    )
    train(config, [curated_logs], run, tokenizer=tokenizer_file, progress=False)
    return run


def _native(run):
    found = read_checkpoint(run)
    model = Transformer(ModelConfig.from_dict(found.state["model_config"]))
    load_weights(found, model)
    return model.eval()


def test_transformers_loads_the_export_and_matches_logits(checkpoint, tmp_path):
    out = export_hf(checkpoint, tmp_path / "hf")
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "modeling_sigma.py", "tokenizer.json", "tokenizer_config.json"}
    model = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    native = _native(checkpoint)
    assert model.config.num_key_heads == 1 and model.config.num_value_heads == 2 and model.config.q_aug_dim == 96

    prompts = ["081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block",
               "sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2"]
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            torch.testing.assert_close(model(ids).logits, native(ids), atol=1e-5, rtol=0)


def test_exported_model_generates_like_the_native_model(checkpoint, tmp_path):
    out = export_hf(checkpoint, tmp_path / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    native = _native(checkpoint)
    ids = tokenizer("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure;", return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=24, do_sample=False)  # with the DiffQKV KV cache
    tokens = ids
    with torch.no_grad():
        for _ in range(24):  # native greedy decoding, no cache
            tokens = torch.cat([tokens, native(tokens)[:, -1:].argmax(-1)], dim=1)
    assert generated.shape == (1, ids.shape[1] + 24)
    assert torch.equal(generated, tokens)
    assert isinstance(tokenizer.decode(generated[0]), str)


def test_export_in_bfloat16(checkpoint, tmp_path):
    out = export_hf(checkpoint, tmp_path / "hf", dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    model = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, dtype=torch.bfloat16)
    assert model.lm_head.weight.dtype == torch.bfloat16


def test_modeling_file_does_not_import_sigma():
    from pathlib import Path

    import sigma.export

    source = Path(sigma.export.__file__).with_name("hf_modeling.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "torch", "transformers"}


def test_left_padded_batches_match_single_prompts(checkpoint, tmp_path):
    out = export_hf(checkpoint, tmp_path / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    assert tokenizer.padding_side == "left"
    prompts = ["kernel: EXT4-fs error", "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    assert (batch.attention_mask == 0).any()
    with torch.no_grad():
        last = model(**batch).logits[:, -1]
        generated = model.generate(**batch, max_new_tokens=6, do_sample=False)[:, -6:]
        for i, prompt in enumerate(prompts):
            single = tokenizer(prompt, return_tensors="pt")
            torch.testing.assert_close(last[i], model(**single).logits[0, -1], atol=1e-5, rtol=0)
            assert torch.equal(generated[i], model.generate(**single, max_new_tokens=6, do_sample=False)[0, -6:])
