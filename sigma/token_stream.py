"""Training windows from a stream of token ids stored on disk: no tokenizing, no Parquet, no Ray.

A *token stream folder* (written by ``jobs.ablate_bundle``) holds ``stream.json`` and
``pieces.npy``: the ids of the pieces of text the stream is made of, in order, drawn from a
*pool* shared by several streams (``pool/``: ``tokens.u16.xz``, every distinct piece's token ids
followed by the end-of-text token, as little-endian uint16 compressed with xz; ``offsets.npy``,
where each piece starts; ``groups.npy``, each piece's source and kind). Streams that share text
share the pool's bytes, which is what keeps a bundle of several variants small.

``TokenWindows`` cuts the stream into windows of ``seq_len + 1`` tokens that overlap by one (every
token a target once an epoch) and reads them in a seeded permutation per epoch; rank ``r`` of
``w`` takes every ``w``-th window. Its whole state is (epoch, index), so a resumed run reads the
same windows as an uninterrupted one. It has ``SequenceStream``'s interface (``next``,
``state_dict``, ``load_state_dict``), so ``sigma.train`` mixes and checkpoints it the same way.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

STREAM_FILE = "stream.json"
POOL_TOKENS = "tokens.u16.xz"


def is_token_stream(path: str | Path) -> bool:
    return (Path(path) / STREAM_FILE).is_file()


@lru_cache(maxsize=4)
def read_pool(pool: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, offsets, groups) of a pool folder, its tokens checked against the sha256 it records."""
    meta = json.loads((pool / "pool.json").read_text())
    raw = (pool / POOL_TOKENS).read_bytes()
    if hashlib.sha256(raw).hexdigest() != meta["sha256"]:
        raise ValueError(f"{pool / POOL_TOKENS}: its sha256 differs from pool.json's: the bundle was changed or is corrupt")
    tokens = np.frombuffer(lzma.decompress(raw), dtype="<u2")
    offsets, groups = np.load(pool / "offsets.npy"), np.load(pool / "groups.npy")
    if offsets[-1] != len(tokens) or len(groups) != len(offsets) - 1:
        raise ValueError(f"{pool}: offsets and tokens disagree")
    return tokens, offsets, groups


class TokenStreamFolder:
    """A token stream folder opened: its tokens in order, and which piece each token came from."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = json.loads((self.path / STREAM_FILE).read_text())
        pool = (self.path / self.meta["pool"]).resolve()
        pool_tokens, offsets, groups = read_pool(pool)
        self.group_names: list[str] = json.loads((pool / "pool.json").read_text())["groups"]
        self.pieces = np.load(self.path / "pieces.npy")
        starts, ends = offsets[self.pieces], offsets[self.pieces + 1]
        lengths = ends - starts
        self.bounds = np.concatenate([[0], np.cumsum(lengths)])  # where each piece starts in the stream
        index = np.repeat(starts - self.bounds[:-1], lengths) + np.arange(self.bounds[-1])
        self.tokens = pool_tokens[index]
        self.piece_groups = groups[self.pieces]

    @property
    def eos(self) -> int:
        return self.meta["eos"]


class TokenWindows:
    """Windows of ``seq_len + 1`` token ids from a token stream folder, for one rank (see the module)."""

    def __init__(self, folder: TokenStreamFolder | str | Path, seq_len: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, vocab_size: int | None = None):
        self.folder = folder if isinstance(folder, TokenStreamFolder) else TokenStreamFolder(folder)
        self.seq_len, self.seed, self.rank, self.world_size = seq_len, seed, rank, world_size
        tokens = self.folder.tokens
        if vocab_size is not None and len(tokens) and int(tokens.max()) >= vocab_size:
            raise ValueError(f"{self.folder.path}: token id {int(tokens.max())} is outside the vocabulary ({vocab_size})")
        self.num_windows = (len(tokens) - 1) // seq_len
        if self.num_windows < world_size:
            raise ValueError(f"{self.folder.path} holds {len(tokens):,} tokens: fewer than one window of {seq_len + 1} "
                             f"for each of {world_size} rank(s)")
        self.epoch, self.index = 0, 0

    def windows(self, epoch: int) -> np.ndarray:
        """This rank's window numbers in ``epoch``, in the order they are read."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)[self.rank :: self.world_size]

    def __iter__(self) -> "TokenWindows":
        return self

    def __next__(self) -> np.ndarray:
        order = self.windows(self.epoch)
        start = int(order[self.index]) * self.seq_len
        self.index += 1
        if self.index == len(order):
            self.epoch, self.index = self.epoch + 1, 0
        return self.folder.tokens[start : start + self.seq_len + 1].astype(np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.index = state["epoch"], state["index"]

    def tokens_read_by_group(self, state: dict[str, Any]) -> dict[str, int]:
        """Target tokens of each source and kind that this rank had read at ``state``."""
        per_token = np.zeros(len(self.folder.tokens) + 1, dtype=np.int64)  # +1 / -1 at the ends of read spans
        spans = [self.windows(e) for e in range(state["epoch"])] + [self.windows(state["epoch"])[: state["index"]]]
        for windows in spans:
            np.add.at(per_token, windows * self.seq_len + 1, 1)
            np.add.at(per_token, windows * self.seq_len + 1 + self.seq_len, -1)
        read = np.cumsum(per_token)[:-1]
        counts = np.add.reduceat(read, self.folder.bounds[:-1]) if len(self.folder.pieces) else np.zeros(0)
        by_group = np.bincount(self.folder.piece_groups, weights=counts,
                               minlength=len(self.folder.group_names))
        return {name: int(n) for name, n in zip(self.folder.group_names, by_group) if n}
