"""Byte-level BPE trained with Hugging Face ``tokenizers`` on curated shards.

Byte-level means every input is encodable (logs carry arbitrary bytes). One special token,
``<|endoftext|>``, ends every document in a packed stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from sigma.shards import ShardSet

END_OF_TEXT = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"
# Document-end tokens of tokenizers trained elsewhere (GPT-2, Llama 3, Llama 2, Gemma), tried in order.
_END_OF_TEXT_CANDIDATES = (END_OF_TEXT, "<|end_of_text|>", "</s>", "<eos>")


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def train_on_shards(data_dirs: Iterable[str | Path], vocab_size: int, out_dir: str | Path) -> Path:
    """Train on every document of the given shard folders; write ``out_dir/tokenizer.json``."""
    shard_sets = [ShardSet.open(d) for d in data_dirs]
    texts = (text for shard_set in shard_sets for text in shard_set.iter_texts())
    tokenizer = train_tokenizer(texts, vocab_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / TOKENIZER_FILE
    tmp = path.with_suffix(".json.tmp")
    tokenizer.save(str(tmp))
    tmp.replace(path)
    return path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A ``tokenizer.json`` file, or a folder holding one (a curate output or an export)."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    tokenizer = Tokenizer.from_file(str(path))
    end_of_text_id(tokenizer)
    return tokenizer


def end_of_text_id(tokenizer: Tokenizer) -> int:
    for token in _END_OF_TEXT_CANDIDATES:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    raise ValueError(f"tokenizer has none of {_END_OF_TEXT_CANDIDATES} to mark document ends")
