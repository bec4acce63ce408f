"""Why a greedy comparison of cache against recompute flakes: how far apart two correct float32
paths land, against how close the top two logits come, for the model the old check built (four
layers of Sigma-1.5B's shape at init_std 0.1) and the same at the training init (0.02).

For each init_std: the largest attention score (its float32 ulp is the rounding every reordered
sum can move it by), the spread of the logits, the cache-against-recompute difference of the
logits on the same tokens (teacher-forced), and the smallest top-2 margin of the greedy steps.
A near tie within that difference is decided by rounding; ``sigma.decode_check`` compares logits
within a tolerance instead.

    python bench/greedy_conditioning.py              # CPU, a few minutes
    python bench/greedy_conditioning.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sigma.config import PRESETS  # noqa: E402
from sigma.decode_check import Reference, check_decoder  # noqa: E402
from sigma.generate import to_inference  # noqa: E402
from sigma.model import Transformer  # noqa: E402


@torch.no_grad()
def largest_attention_score(model: Transformer, tokens: torch.Tensor) -> float:
    """The largest |q . k| / sqrt(d) any head of any layer computes on ``tokens`` (causal)."""
    x = model.tok_embeddings(tokens)
    cos, sin = model.rope_cos[: tokens.size(1)], model.rope_sin[: tokens.size(1)]
    largest = 0.0
    for block in model.layers:
        q, k, _ = block.attention.project(block.attention_norm(x), cos, sin)
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
        scores = (q @ k.transpose(-1, -2)) / q.size(-1) ** 0.5
        largest = max(largest, scores.tril().abs().max().item())
        x = block(x, cos, sin, None)
    return largest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init-std", nargs="+", type=float, default=[0.1, 0.02])
    parser.add_argument("--prompt-lengths", nargs="+", type=int, default=[37], help="the old check used 300 37 1")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print("init_std | largest attention score | its float32 ulp | logits' spread | cache vs recompute: largest "
          "difference / spread | smallest top-2 margin / spread")
    for std in args.init_std:
        config = PRESETS["sigma-1.5b"].replace(n_layers=4, init_std=std, max_seq_len=max(args.prompt_lengths) + args.new_tokens + 8)
        torch.manual_seed(0)
        model = to_inference(Transformer(config), args.device, torch.float32)
        gen = torch.Generator().manual_seed(1)
        prompts = [torch.randint(0, config.vocab_size, (n,), generator=gen).tolist() for n in args.prompt_lengths]
        reference = Reference.compute(model, prompts, args.new_tokens)
        found = check_decoder(model, reference, attention="torch")
        spread = reference.logits.std(-1).mean().item()
        score = largest_attention_score(model, torch.tensor([prompts[0] + reference.tokens[0]], device=args.device))
        ulp = torch.finfo(torch.float32).eps * 2.0 ** torch.tensor(score).log2().floor().item()
        print(f"{std} | {score:,.1f} | {ulp:.1e} | {spread:.2f} | {found.max_error:.1e} | {found.smallest_margin:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
