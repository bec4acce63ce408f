"""The fast attention path against a float64 reference, and the guard against wrong head maps."""

import pytest
import torch
import torch.nn.functional as F

from sigma.attention import check_attention_kernel, reference_attention, sdpa_attention
from sigma.config import PRESETS, ModelConfig
from sigma.model import Transformer

LAYOUTS = [(32, 4, 16, 64, 64), (4, 1, 2, 16, 16), (8, 2, 8, 32, 32), (8, 4, 2, 16, 16), (6, 1, 3, 16, 32)]


def _qkv(n_q, n_k, n_v, d_qk, d_v, dtype, seq=96, batch=2):
    gen = torch.Generator().manual_seed(n_q * 100 + n_k * 10 + n_v)
    q = torch.randn(batch, n_q, seq, d_qk, generator=gen) * 2
    k = torch.randn(batch, n_k, seq, d_qk, generator=gen)
    v = torch.randn(batch, n_v, seq, d_v, generator=gen)
    return q.to(dtype), k.to(dtype), v.to(dtype)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: "q{}k{}v{}-d{}/{}".format(*l))
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_fast_path_equals_float64_reference(layout, dtype, atol):
    q, k, v = _qkv(*layout, dtype)
    out = sdpa_attention(q, k, v)
    assert out.dtype == dtype and out.shape == (2, layout[0], 96, layout[4])
    torch.testing.assert_close(out.double(), reference_attention(q, k, v), atol=atol, rtol=0)


def test_document_mask_equals_reference():
    q, k, v = _qkv(8, 2, 4, 16, 16, torch.float32, seq=40)
    doc_ids = torch.tensor([[0] * 10 + [1] * 25 + [2] * 5, [0] * 40])
    mask = (doc_ids[:, :, None] == doc_ids[:, None, :]).unsqueeze(1) & torch.ones(40, 40, dtype=torch.bool).tril()
    torch.testing.assert_close(sdpa_attention(q, k, v, mask).double(), reference_attention(q, k, v, mask), atol=1e-5, rtol=0)


def _tiled_heads(q, k, v, mask):
    """Expands K and V with repeat (head h reads h mod n_k), not repeat_interleave: a plausible kernel bug."""
    n_q = q.size(1)
    return F.scaled_dot_product_attention(q, k.repeat(1, n_q // k.size(1), 1, 1), v.repeat(1, n_q // v.size(1), 1, 1), is_causal=True)


def _v_through_k_map(q, k, v, mask):
    """Reads V heads with K's head map, silently dropping V heads: what FlexAttention was seen to do."""
    n_q, n_k = q.size(1), k.size(1)
    v = v[:, :n_k].repeat_interleave(n_q // n_k, dim=1)
    return F.scaled_dot_product_attention(q, k.repeat_interleave(n_q // n_k, dim=1), v, is_causal=True)


class _RightForwardWrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v):
        ctx.save_for_backward(q, k, v)
        return sdpa_attention(q, k, v)

    @staticmethod
    def backward(ctx, grad):
        with torch.enable_grad():
            q, k, v = (t.detach().requires_grad_() for t in ctx.saved_tensors)
            return torch.autograd.grad(_tiled_heads(q, k, v, None), (q, k, v), grad)


def _wrong_backward(q, k, v, mask):
    """Correct outputs, gradients from the wrong head map: only a gradient check sees it."""
    return _RightForwardWrongBackward.apply(q, k, v)


@pytest.mark.parametrize("broken", [_tiled_heads, _v_through_k_map, _wrong_backward])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_guard_rejects_kernels_that_mishandle_unequal_heads(broken, dtype):
    for name in ("sigma-tiny", "sigma-1.5b"):
        with pytest.raises(RuntimeError, match="disagrees with the float64 reference"):
            check_attention_kernel(PRESETS[name], "cpu", dtype, kernel=broken)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_guard_accepts_the_real_kernel(dtype):
    for name in ("sigma-tiny", "sigma-1.5b", "sigma-1b-gqa"):
        assert check_attention_kernel(PRESETS[name], "cpu", dtype) < (1e-4 if dtype == torch.float32 else 2e-2)


def test_diffqkv_equals_mha_with_duplicated_heads():
    """DiffQKV 4/1/2 is MHA whose K heads are one head copied 4 times and V heads two copied twice."""
    diff_config = PRESETS["sigma-tiny"].replace(q_aug_dim=0)
    mha_config = diff_config.replace(n_k_heads=4, n_v_heads=4)
    torch.manual_seed(0)
    diff, mha = Transformer(diff_config), Transformer(mha_config)
    state = diff.state_dict()
    d = diff_config.d_qk_head
    for i in range(diff_config.n_layers):
        prefix = f"layers.{i}.attention."
        k = state[prefix + "k_proj.weight"].view(1, d, -1)
        v = state[prefix + "v_proj.weight"].view(2, d, -1)
        state[prefix + "k_proj.weight"] = k.repeat_interleave(4, 0).reshape(4 * d, -1)
        state[prefix + "v_proj.weight"] = v.repeat_interleave(2, 0).reshape(4 * d, -1)
    mha.load_state_dict(state)
    tokens = torch.randint(0, diff_config.vocab_size, (2, 50))
    torch.testing.assert_close(diff(tokens), mha(tokens), atol=1e-5, rtol=0)


def test_model_is_causal():
    torch.manual_seed(0)
    model = Transformer(PRESETS["sigma-tiny"])
    tokens = torch.randint(0, 512, (1, 64))
    changed = tokens.clone()
    changed[0, 40:] = (changed[0, 40:] + 1) % 512
    torch.testing.assert_close(model(tokens)[:, :40], model(changed)[:, :40])


def test_document_masking_equals_separate_documents():
    from sigma.packing import document_layout

    torch.manual_seed(0)
    model = Transformer(PRESETS["sigma-tiny"])
    eos = 0
    first, second = torch.randint(1, 512, (1, 20)), torch.randint(1, 512, (1, 30))
    packed = torch.cat([first, torch.tensor([[eos]]), second], dim=1)
    doc_ids, positions = document_layout(packed, eos)
    assert doc_ids.tolist() == [[0] * 21 + [1] * 30]
    assert positions.tolist() == [list(range(21)) + list(range(30))]
    logits = model(packed, doc_ids=doc_ids, positions=positions)
    torch.testing.assert_close(logits[:, 21:], model(second), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[:, :20], model(first), atol=1e-5, rtol=0)


def test_tied_embeddings_share_one_tensor():
    model = Transformer(ModelConfig(vocab_size=64, n_layers=1, d_model=32, n_q_heads=2, n_k_heads=1, n_v_heads=2,
                                    d_qk_head=16, d_v_head=16, d_ffn=64, tie_embeddings=True))
    assert model.output.weight is model.tok_embeddings.weight


def _ignores_the_mask(q, k, v, mask):
    """Causal attention whatever the mask: a kernel path that drops the document mask."""
    return sdpa_attention(q, k, v, None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_guard_checks_the_document_masked_path(dtype):
    with pytest.raises(RuntimeError, match=r"\(document mask\)"):
        check_attention_kernel(PRESETS["sigma-tiny"], "cpu", dtype, kernel=_ignores_the_mask)
