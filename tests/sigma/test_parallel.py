"""Training memory options and FSDP: each gives the losses and gradients of the plain run.

Chunked cross-entropy and activation checkpointing against the plain model on one process; FSDP
(torch's fully_shard) and DDP on two gloo processes on the CPU against one process on the whole
batch; and a real `sigma train` under torchrun with FSDP, which saves, resumes and matches DDP.
"""

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from sigma.checkpoint import find_checkpoint
from sigma.config import PRESETS
from sigma.losses import chunked_cross_entropy
from sigma.model import Transformer

from .conftest import torchrun_train

TINY = PRESETS["sigma-tiny"]


def _grads(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def _batch(ignored=True, batch=4, seq=32):
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, TINY.vocab_size, (batch, seq + 1), generator=gen)
    targets = tokens[:, 1:].clone()
    if ignored:  # positions the loss skips (targets < 0)
        targets[0, :5] = -1
    return tokens[:, :-1], targets


def test_chunked_cross_entropy_equals_the_plain_loss_and_gradients():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=gen, requires_grad=True)  # 37 tokens: chunks of 8 leave 5
    weight = torch.randn(50, 16, generator=gen, requires_grad=True)
    targets = torch.randint(0, 50, (37,), generator=gen)
    targets[[3, 20]] = -1
    plain = F.cross_entropy(hidden @ weight.T, targets, ignore_index=-1)
    plain_grads = torch.autograd.grad(plain * 3, (hidden, weight))
    chunked = chunked_cross_entropy(hidden, weight, targets, chunk=8)
    chunked_grads = torch.autograd.grad(chunked * 3, (hidden, weight))
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    for got, want in zip(chunked_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # evaluation: the same loss, no gradient buffers
        torch.testing.assert_close(chunked_cross_entropy(hidden, weight, targets, chunk=5), plain.detach())
    with pytest.raises(ValueError, match="positive"):
        chunked_cross_entropy(hidden, weight, targets, chunk=0)


@pytest.mark.parametrize("option", ["loss_chunk", "activation_checkpointing"])
def test_memory_options_keep_the_models_loss_and_gradients(option):
    inputs, targets = _batch()
    torch.manual_seed(0)
    model = Transformer(TINY.replace(tie_embeddings=True))  # tied: the head's gradient meets the embedding's
    loss = model(inputs, targets)
    loss.backward()
    want = _grads(model)
    model.zero_grad()
    setattr(model, option, 24 if option == "loss_chunk" else True)
    got_loss = model(inputs, targets)
    got_loss.backward()
    torch.testing.assert_close(got_loss, loss, rtol=1e-6, atol=1e-6)
    got = _grads(model)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)


STEPS = 3


def _train_steps(model, inputs, targets, world_size=1):
    from sigma.optimizer import build_optimizer
    from sigma.parallel import scalar

    optimizer = build_optimizer(model, 1e-2, 0.1, (0.9, 0.95), 1e-8, fused=False)
    losses = []
    for _ in range(STEPS):
        loss = model(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mean = loss.detach().clone()
        if world_size > 1:
            dist.all_reduce(mean)
            mean /= world_size
        losses.append(scalar(mean))
    return losses


def _rank(rank, port, mode, result_file):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    from sigma.parallel import parallelize

    torch.manual_seed(0)
    model = Transformer(TINY)
    model.loss_chunk, model.activation_checkpointing = 40, True  # composed with the sharding
    inputs, targets = _batch(ignored=False)  # every half then weighs the same in the mean
    half = slice(2 * rank, 2 * rank + 2)  # each rank its half of the batch; equal halves keep the mean
    train_model = parallelize(model, mode, torch.device("cpu"))
    losses = _train_steps(train_model, inputs[half], targets[half], world_size=2)
    if rank == 0:
        Path(result_file).write_text(json.dumps(losses))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["fsdp", "ddp"])
def test_two_gloo_ranks_give_the_losses_of_one_process(mode, tmp_path):
    torch.manual_seed(0)
    inputs, targets = _batch(ignored=False)
    one = _train_steps(Transformer(TINY), inputs, targets)
    result = tmp_path / "losses.json"
    mp.spawn(_rank, args=(_free_port(), mode, str(result)), nprocs=2, join=True)
    two = json.loads(result.read_text())
    assert two == pytest.approx(one, rel=1e-5)
    assert one[-1] < one[0]  # the steps did move the model


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_fsdp_training_run_saves_resumes_and_matches_ddp(curated_logs, tokenizer_file, tmp_path, subprocess_env):
    """torchrun with 2 CPU ranks: FSDP's losses equal DDP's, its checkpoint is the unsharded one,
    and a run stopped and resumed equals the uninterrupted one."""
    def run(out, parallel, *extra):
        config = tmp_path / f"{parallel}.yaml"
        config.write_text(f"model: sigma-tiny\nparallel: {parallel}\nloss_chunk: 50\nlr: 0.003\nwarmup_steps: 1\n")
        torchrun_train(
            [str(config), "--data", str(curated_logs), "--tokenizer", str(tokenizer_file), "--out", str(out), "--steps", "4", "--seq-len", "32",
             "--batch-size", "2", "--eval-every", "2", "--log-every", "1", "--save-every", "2", "--no-progress", *extra],
            out, subprocess_env,
        )

    run(tmp_path / "ddp", "ddp")
    run(tmp_path / "fsdp", "fsdp", "--stop-at", "2")
    run(tmp_path / "fsdp", "fsdp", "--resume")
    ddp, fsdp = _metrics(tmp_path / "ddp"), _metrics(tmp_path / "fsdp")
    assert [m["step"] for m in ddp] == [m["step"] for m in fsdp]
    for a, b in zip(ddp, fsdp):
        for key in ("loss", "eval_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)
    from safetensors.torch import load_file

    weights = load_file(str(find_checkpoint(tmp_path / "fsdp") / "model.safetensors"))
    assert weights["layers.0.attention.k_proj.weight"].shape == (TINY.d_qk_head * TINY.n_k_heads, TINY.d_model)
