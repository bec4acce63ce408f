"""`sigma convert`: a Llama GQA model becomes a Sigma checkpoint with fewer K heads.

A tiny random Llama written by transformers checks the folder path and the K pooling; the packaged
SmolLM2 (a Q4_1 GGUF) checks the GGUF path, RoPE row order included, against transformers' own
GGUF loader.
"""

import json

import pytest
import torch

from sigma.checkpoint import read_checkpoint
from sigma.convert import MANIFEST_FILE, convert, converted_model, load_source, pool_key_heads
from sigma.generate import Engine, greedy_by_recompute
from sigma.tokenizer import END_OF_TEXT, train_tokenizer

transformers = pytest.importorskip("transformers")

LOG_LINES = [
    "Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
    "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4",
]

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A random 2-layer Llama (4 query heads, 2 KV heads, tied embeddings) saved as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("llama")
    tokenizer = train_tokenizer(LOG_LINES * 20, vocab_size=300, min_frequency=1)
    tokenizer.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
        "unk_token": END_OF_TEXT, "chat_template": CHATML,
    }))
    config = transformers.LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=50_000.0,
        max_position_embeddings=128, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    return folder, model, tokenizer


def test_folder_with_all_kv_heads_computes_the_source_logits(tiny_llama, tmp_path):
    folder, source, tokenizer = tiny_llama
    out = convert(folder, 2, tmp_path / "k2")
    engine = Engine.load(out, device="cpu")
    assert engine.config.n_k_heads == engine.config.n_v_heads == 2 and engine.config.q_aug_dim == 0
    assert engine.config.tie_embeddings and engine.config.rope_theta == 50_000.0
    ids = torch.tensor([tokenizer.encode(LOG_LINES[0]).ids])
    with torch.no_grad():
        torch.testing.assert_close(engine.model(ids), source(ids).logits, atol=1e-5, rtol=0)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["source"]["format"] == "huggingface" and len(manifest["source"]["sha256"]) == 64
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == CHATML
    assert read_checkpoint(out).step == 0


def test_one_k_head_is_the_mean_of_the_k_rows_and_decodes_like_recompute(tiny_llama, tmp_path):
    folder, source, tokenizer = tiny_llama
    out = convert(folder, 1, tmp_path / "k1")
    engine = Engine.load(out, device="cpu")
    assert (engine.config.n_q_heads, engine.config.n_k_heads, engine.config.n_v_heads) == (4, 1, 2)
    k_source = source.model.layers[1].self_attn.k_proj.weight.detach()
    k_rows = engine.model.layers[1].attention.k_proj.weight
    torch.testing.assert_close(k_rows, (k_source[:16] + k_source[16:]) / 2)
    torch.testing.assert_close(engine.model.layers[1].attention.v_proj.weight, source.model.layers[1].self_attn.v_proj.weight)
    prompt = [engine.eos_id, *tokenizer.encode(LOG_LINES[1]).ids]
    [(cached, _)] = engine.generate_ids([prompt], 20, ignore_eos=True)
    assert cached == greedy_by_recompute(engine.model, prompt, 20)


def test_sigma_backend_renders_the_carried_chat_template_as_transformers_does(tiny_llama, tmp_path):
    from sigma.backends.base import EngineSpec, Prompt, Sampling
    from sigma.backends.sigma_engine import SigmaBackend

    out = convert(tiny_llama[0], 1, tmp_path / "k1")
    backend = SigmaBackend(EngineSpec(backend="sigma", model=str(out), device="cpu"))
    assert backend.chat
    prompt = Prompt((("system", "You explain logs."), ("user", LOG_LINES[0])), plain=LOG_LINES[0])
    expected = transformers.AutoTokenizer.from_pretrained(out).apply_chat_template(
        [{"role": r, "content": c} for r, c in prompt.messages], tokenize=False, add_generation_prompt=True)
    assert backend.render(prompt) == expected
    [generation] = backend.generate([prompt], Sampling(max_new_tokens=6))
    assert generation.prompt_tokens == backend.count_tokens(expected) and generation.completion_tokens >= 1
    assert backend.engine.tokenizer.token_to_id("<|im_end|>") in backend.engine.end_ids
    plain = SigmaBackend(EngineSpec(backend="sigma", model=str(out), device="cpu", chat=False))
    assert not plain.chat and plain.render(prompt) == LOG_LINES[0]


def test_k_heads_must_divide_the_kv_heads(tiny_llama, tmp_path):
    with pytest.raises(ValueError, match="must divide the source's 2 KV heads"):
        convert(tiny_llama[0], 3, tmp_path / "k3")
    assert not (tmp_path / "k3").exists()


def test_pooling_keeps_groups_of_consecutive_heads():
    weight = torch.arange(6.0).repeat_interleave(2).view(6, 2).repeat_interleave(3, dim=0)  # 6 heads of dim 3
    pooled = pool_key_heads(weight, n_kv=6, k_heads=2)
    assert pooled[:, 0].tolist() == [1.0] * 3 + [4.0] * 3  # mean of heads 0-2, then of heads 3-5


@pytest.fixture(scope="module")
def smollm2_source():
    """SmolLM2's GGUF read once for this module (de-quantizing it takes a few seconds on a CPU)."""
    pytest.importorskip("gguf")
    from sigma.backends.packaged import packaged_model

    try:
        packaged_model("smollm2")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        pytest.skip(str(exc))
    return load_source("smollm2")


@pytest.mark.slow
def test_smollm2_with_three_k_heads_reproduces_transformers_logits(smollm2_source, smollm2):
    assert smollm2_source.description["gguf_tensor_types"]["Q4_1"] > 0
    model = converted_model(smollm2_source, 3).eval()
    ids = smollm2.tokenizer(LOG_LINES[0], add_special_tokens=False)["input_ids"]
    assert ids == smollm2_source_tokenizer(smollm2_source).encode(LOG_LINES[0], add_special_tokens=False).ids
    with torch.no_grad():
        expected = smollm2.model(input_ids=torch.tensor([ids])).logits.float()
        got = model(torch.tensor([ids]))
    torch.testing.assert_close(got, expected, atol=5e-4, rtol=1e-4)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_smollm2_with_one_k_head_decodes_like_recompute(smollm2_source):
    model = converted_model(smollm2_source, 1).eval()
    tokenizer = smollm2_source_tokenizer(smollm2_source)
    prompt = tokenizer.encode(LOG_LINES[2], add_special_tokens=False).ids
    [(cached, _)] = Engine(model).generate_ids([prompt], 8, ignore_eos=True)
    assert cached == greedy_by_recompute(model, prompt, 8)


def smollm2_source_tokenizer(source):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(source.tokenizer_files["tokenizer.json"])


def test_a_converted_model_exports_to_transformers_with_its_chat_template(tiny_llama, tmp_path):
    from sigma.export import export_hf

    folder, source, tokenizer = tiny_llama
    hf = export_hf(convert(folder, 1, tmp_path / "k1"), tmp_path / "hf")
    exported = transformers.AutoModelForCausalLM.from_pretrained(hf, trust_remote_code=True).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(hf)
    assert hf_tokenizer.chat_template == CHATML and hf_tokenizer.eos_token == "<|im_end|>"
    native = Engine.load(tmp_path / "k1", device="cpu").model
    ids = torch.tensor([tokenizer.encode(LOG_LINES[2]).ids])
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, native(ids), atol=1e-5, rtol=0)


def test_training_from_a_converted_model_keeps_its_chat_settings(tiny_llama, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sigma.train import TrainConfig, train

    shards = tmp_path / "logs" / "shards"
    shards.mkdir(parents=True)
    rows = [{"id": f"line-{i}", "text": LOG_LINES[i % 3]} for i in range(24)]
    pq.write_table(pa.Table.from_pylist(rows), shards / "part-00000.parquet", row_group_size=4)
    converted = convert(tiny_llama[0], 1, tmp_path / "k1")
    model = json.loads((converted / "state.json").read_text())["model_config"]
    config = TrainConfig(model=model, seq_len=32, batch_size=2, max_steps=2, warmup_steps=1, lr=1e-3,
                         held_out_fraction=0.0, save_every=2, log_every=1)
    record = train(config, [tmp_path / "logs"], tmp_path / "run", init_from=converted, progress=False)
    assert record["step"] == 2
    backend_settings = Engine.load(tmp_path / "run", device="cpu").chat_settings
    assert backend_settings is not None and backend_settings.template == CHATML
