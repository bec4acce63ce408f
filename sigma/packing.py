"""Shards -> tokens -> fixed-length training sequences, deterministic and resumable.

A ``SequenceStream`` walks one shard set: each epoch visits the row groups in a seeded order,
rank ``r`` of ``w`` takes every ``w``-th of them, and rows inside a row group are visited in a
seeded order too. Where a corpus has fewer row groups than ranks, each row group is read as
several parts (every ``p``-th row of its order), so ranks share documents instead of waiting for
row groups that are not there; a lane or rank whose share of an epoch holds no document of its
split (a row group of held-out documents, say) goes on to the next epoch. Only a corpus with no
document of the split at all is an error (``NoDocumentsError``). Documents are tokenized as they are read, each ends with the end-of-text token,
and the token stream is cut into windows of ``seq_len + 1`` tokens (inputs and shifted targets)
that overlap by one token, so every token is a target exactly once.

The whole state is the position of the next window's first token: (epoch, row group, row, token),
one per lane (see ``SequenceStream``). Resuming re-reads that one document and skips to the
token; no tokens are stored.

A ``DataMixture`` interleaves several streams by weight with stride scheduling (the source whose
count/weight is lowest goes next), deterministic without a random state to save.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from sigma.shards import RowGroup, ShardSet
from sigma.tokenizer import end_of_text_id

TRAIN, HELD_OUT = "train", "held_out"


class NoDocumentsError(ValueError):
    """A shard set that holds no document of the split asked for: nothing to read, ever."""


@dataclass(frozen=True)
class Unit:
    """What a lane reads in turn: one part of a row group (every ``parts``-th row of its order)."""

    group: RowGroup
    part: int = 0


def is_held_out(doc_id: str, fraction: float) -> bool:
    """A stable split by document id: the same ids are held out on every run and machine."""
    digest = hashlib.blake2b(doc_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


@dataclass
class StreamPosition:
    epoch: int = 0
    unit: int = 0  # index into the lane's units of the epoch
    row: int = 0  # index into the unit's row order
    token: int = 0  # offset inside that document's tokens


class _Lane:
    """One cursor through a fixed share of each epoch's units."""

    def __init__(self, stream: "SequenceStream", index: int, position: StreamPosition):
        self.stream, self.index = stream, index
        self._start = position
        self._segments: list[tuple[StreamPosition, np.ndarray]] = []  # buffered tokens, oldest first
        self._documents = self._iter_documents(position)

    @property
    def position(self) -> StreamPosition:
        return self._segments[0][0] if self._segments else self._start

    def _iter_documents(self, start: StreamPosition) -> Iterator[tuple[StreamPosition, np.ndarray]]:
        stream = self.stream
        epoch, unit, row, token = start.epoch, start.unit, start.row, start.token
        while True:
            found = False
            for unit_index, item in enumerate(stream.units(epoch, self.index)[unit:], start=unit):
                table = stream.shard_set.read_row_group(item.group)
                ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
                row_order = stream.row_order(epoch, item)
                picked = [(r, int(row_order[r])) for r in range(row, len(row_order)) if stream.keeps(ids[row_order[r]])]
                for i in range(0, len(picked), stream.encode_batch_size):
                    chunk = picked[i : i + stream.encode_batch_size]
                    encodings = stream.tokenizer.encode_batch([texts[j] for _, j in chunk])
                    for (r, _), encoding in zip(chunk, encodings):
                        tokens = np.array(encoding.ids + [stream.eos], dtype=np.int64)
                        found = True
                        yield StreamPosition(epoch, unit_index, r, token), tokens[token:]
                        token = 0
                row = 0
            if not found and unit == 0:  # this lane's share of the epoch held nothing of the split
                stream.check_has_documents()
            epoch, unit = epoch + 1, 0

    def __next__(self) -> np.ndarray:
        need = self.stream.seq_len + 1
        while sum(len(tokens) for _, tokens in self._segments) < need:
            self._segments.append(next(self._documents))
        parts, missing = [], need
        for _, tokens in self._segments:
            parts.append(tokens[:missing])
            missing -= len(parts[-1])
            if not missing:
                break
        window = np.concatenate(parts)
        self._consume(need - 1)  # keep the window's last token: it starts the next window
        return window

    def _consume(self, count: int) -> None:
        while count:
            position, tokens = self._segments[0]
            if len(tokens) <= count:
                count -= len(tokens)
                self._segments.pop(0)
            else:
                moved = StreamPosition(position.epoch, position.unit, position.row, position.token + count)
                self._segments[0] = (moved, tokens[count:])
                count = 0


class SequenceStream:
    """Windows of ``seq_len + 1`` token ids from one shard set, for one rank and split.

    ``lanes`` cursors read different row groups side by side and take turns, so consecutive
    windows (one batch) come from different documents rather than from one long man page.
    """

    def __init__(
        self,
        shard_set: ShardSet,
        tokenizer: Tokenizer,
        seq_len: int,
        *,
        split: str = TRAIN,
        held_out_fraction: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        lanes: int = 1,
        state: dict[str, Any] | None = None,
        encode_batch_size: int = 64,
    ):
        if split not in (TRAIN, HELD_OUT):
            raise ValueError(f"split must be {TRAIN!r} or {HELD_OUT!r}")
        self.shard_set, self.tokenizer, self.seq_len = shard_set, tokenizer, seq_len
        self.split, self.held_out_fraction = split, held_out_fraction
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.encode_batch_size = encode_batch_size
        self.eos = end_of_text_id(tokenizer)
        num_groups = len(shard_set.row_groups)
        if num_groups == 0:
            raise NoDocumentsError(f"{shard_set.root} holds no documents (its shards have no rows)")
        self.parts = -(-world_size // num_groups)  # ranks share row groups when there are fewer than ranks
        self.num_lanes = min(lanes, len(self.units(0)))
        self._missing: str | None = None  # why the split is empty; "" once a document was found
        self.load_state_dict(state or {"lanes": [asdict(StreamPosition())] * self.num_lanes, "turn": 0})

    def units(self, epoch: int, lane: int | None = None) -> list[Unit]:
        """This rank's units in ``epoch`` (all lanes, or one lane's share)."""
        groups = self.shard_set.row_groups
        order = np.random.default_rng([self.seed, epoch]).permutation(len(groups))
        units = [Unit(groups[i], part) for i in order for part in range(self.parts)]
        mine = units[self.rank :: self.world_size]
        return mine if lane is None else mine[lane :: self.num_lanes]

    def row_order(self, epoch: int, unit: Unit) -> np.ndarray:
        """Indices into the unit's row group, in the order the unit is read in ``epoch``. The parts
        rotate with the epoch, so a row is not always read by the same rank."""
        group = unit.group
        order = np.random.default_rng([self.seed, epoch, group.file_index, group.index]).permutation(group.num_rows)
        return order[(unit.part + epoch) % self.parts :: self.parts]

    def check_has_documents(self) -> None:
        """Raise ``NoDocumentsError`` unless some document of the whole shard set is in this split
        (read once, and only when a lane found an epoch with nothing for it)."""
        if self._missing is None:
            ids = [i for g in self.shard_set.row_groups
                   for i in self.shard_set.read_row_group(g, ["id"]).column(0).to_pylist()]
            what = "all held out for evaluation" if self.split == TRAIN else "none held out for evaluation"
            self._missing = "" if any(map(self.keeps, ids)) else (
                f"{self.shard_set.root} holds {len(ids)} document(s), {what} "
                f"(held_out_fraction {self.held_out_fraction}): no {self.split} documents to read")
        if self._missing:
            raise NoDocumentsError(self._missing)

    def keeps(self, doc_id: str) -> bool:
        return is_held_out(doc_id, self.held_out_fraction) == (self.split == HELD_OUT)

    @property
    def epoch(self) -> int:
        """The epoch the slowest lane is in."""
        return min(lane.position.epoch for lane in self._lanes)

    def state_dict(self) -> dict[str, Any]:
        """Where each lane's next window starts, and whose turn it is: all a resume needs."""
        return {"lanes": [asdict(lane.position) for lane in self._lanes], "turn": self._turn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["lanes"]) != self.num_lanes:
            raise ValueError(f"state has {len(state['lanes'])} lanes, this stream {self.num_lanes}")
        self._lanes = [_Lane(self, i, StreamPosition(**p)) for i, p in enumerate(state["lanes"])]
        self._turn = state["turn"]

    def __iter__(self) -> "SequenceStream":
        return self

    def __next__(self) -> np.ndarray:
        window = next(self._lanes[self._turn])
        self._turn = (self._turn + 1) % self.num_lanes
        return window


class DataMixture:
    """Batches drawn from several streams in proportion to their weights."""

    def __init__(self, streams: Sequence[SequenceStream], weights: Sequence[float] | None = None):
        weights = list(weights) if weights is not None else [1.0] * len(streams)
        if len(weights) != len(streams) or min(weights) <= 0:
            raise ValueError("need one positive weight per stream")
        self.streams, self.weights = list(streams), weights
        self.counts = [0] * len(streams)

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """(batch_size, seq_len + 1) int64 token ids."""
        rows = []
        for _ in range(batch_size):
            source = min(range(len(self.streams)), key=lambda i: (self.counts[i] + 1) / self.weights[i])
            self.counts[source] += 1
            rows.append(next(self.streams[source]))
        return torch.from_numpy(np.stack(rows))

    def state_dict(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "streams": [s.state_dict() for s in self.streams]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["streams"]) != len(self.streams):
            raise ValueError(f"checkpoint has {len(state['streams'])} data streams, this run {len(self.streams)}")
        self.counts = list(state["counts"])
        for stream, stream_state in zip(self.streams, state["streams"]):
            stream.load_state_dict(stream_state)


def document_layout(tokens: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Document ids and in-document positions (B, T) of packed inputs whose documents end in ``eos_id``.

    A token after an end-of-text token starts a new document; feed both to ``Transformer`` to keep
    attention (and RoPE positions) inside documents.
    """
    ends = (tokens == eos_id).long()
    doc_ids = torch.cumsum(ends, dim=1) - ends  # the eos belongs to the document it ends
    index = torch.arange(tokens.size(1), device=tokens.device).expand_as(tokens)
    starts = torch.where(torch.roll(ends, 1, dims=1).bool() | (index == 0), index, torch.zeros_like(index))
    positions = index - torch.cummax(starts, dim=1).values
    return doc_ids, positions
