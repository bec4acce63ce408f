import pytest
import yaml

from sigma.config import PRESETS, ModelConfig, resolve_model_config
from sigma.flops import count_parameters, matmul_parameters, training_flops_per_token
from sigma.model import Transformer
from sigma.train import TrainConfig


def test_paper_shape_of_sigma_1_5b():
    c = PRESETS["sigma-1.5b"]
    assert (c.n_layers, c.d_model, c.d_ffn, c.vocab_size, c.rope_theta) == (26, 2048, 6144, 128_256, 50_000)
    assert (c.n_q_heads, c.n_k_heads, c.n_v_heads, c.d_qk_head, c.d_v_head, c.q_aug_dim) == (32, 4, 16, 64, 64, 3072)
    # The KV cache of DiffQKV 4/16 is 37.5% smaller than GQA 16/16.
    assert c.kv_cache_values_per_token / PRESETS["sigma-1.5b-gqa"].kv_cache_values_per_token == pytest.approx(0.625)


def test_baselines_differ_only_in_heads_and_augmented_q():
    for name in ("sigma-tiny", "sigma-125m", "sigma-1b", "sigma-1.5b"):
        diff = PRESETS[name].to_dict()
        for suffix, kind in (("-gqa", "gqa"), ("-mha", "mha")):
            base = PRESETS[name + suffix]
            assert base.attention_kind == kind and base.q_aug_dim == 0
            changed = {k for k, v in base.to_dict().items() if diff[k] != v}
            assert changed <= {"n_k_heads", "n_v_heads", "q_aug_dim", "d_qk_head"}


@pytest.mark.parametrize("name", ["sigma-tiny", "sigma-tiny-gqa", "sigma-tiny-mha"])
@pytest.mark.parametrize("tied", [False, True])
def test_parameter_count_matches_the_module(name, tied):
    config = PRESETS[name].replace(tie_embeddings=tied)
    model = Transformer(config)
    assert sum(p.numel() for p in model.parameters()) == count_parameters(config).total


def test_flops_formula_is_6n_plus_attention():
    c = PRESETS["sigma-1b"]
    n = count_parameters(c).non_embedding  # untied: the output head is non-embedding
    assert matmul_parameters(c) == n
    assert training_flops_per_token(c, 2048) == 6 * n + 12 * c.n_layers * c.n_q_heads * c.d_qk_head * 2048


def test_invalid_head_counts_are_refused():
    with pytest.raises(ValueError, match="multiple"):
        ModelConfig(n_q_heads=12, n_k_heads=5)


def test_yaml_train_config_with_model_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": {"preset": "sigma-tiny", "n_layers": 3}, "max_steps": 7, "betas": [0.9, 0.99]}))
    config = TrainConfig.load(path)
    assert config.max_steps == 7 and config.betas == (0.9, 0.99)
    assert config.model_config() == PRESETS["sigma-tiny"].replace(n_layers=3)
    assert config.sequence_length() == PRESETS["sigma-tiny"].max_seq_len


def test_unknown_keys_are_errors(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: sigma-tiny\nmax_stpes: 7\n")
    with pytest.raises(ValueError, match="max_stpes"):
        TrainConfig.load(path)
    with pytest.raises(ValueError, match="n_layer"):
        resolve_model_config({"preset": "sigma-tiny", "n_layer": 3})
    with pytest.raises(KeyError, match="sigma-2b"):
        resolve_model_config("sigma-2b")


def test_checked_in_train_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs" / "train").glob("*.yaml"))
    assert configs
    for path in configs:
        config = TrainConfig.load(path)
        assert config.sequence_length() <= config.model_config().max_seq_len
