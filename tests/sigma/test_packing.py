import numpy as np
import pytest
import torch

from sigma.packing import (HELD_OUT, TRAIN, DataMixture, NoDocumentsError, SequenceStream, document_layout,
                           is_held_out)
from sigma.shards import ShardSet
from sigma.tokenizer import load_tokenizer, train_on_shards

from .conftest import write_small_corpus


@pytest.fixture(scope="module")
def tokenizer(tokenizer_file):
    return load_tokenizer(tokenizer_file)


def _stream(folder, tokenizer, **kwargs):
    return SequenceStream(ShardSet.open(folder), tokenizer, kwargs.pop("seq_len", 64), **kwargs)


def test_windows_cover_the_token_stream_in_order(curated_man, tokenizer):
    """With one lane, windows overlapping by one token rebuild the documents' tokens exactly."""
    stream = _stream(curated_man, tokenizer, seq_len=64)
    windows = [next(stream) for _ in range(200)]
    assert all(w.shape == (65,) and w.dtype == np.int64 for w in windows)
    assert all(a[-1] == b[0] for a, b in zip(windows, windows[1:]))
    joined = np.concatenate([windows[0]] + [w[1:] for w in windows[1:]])

    shard_set = ShardSet.open(curated_man)
    unit = stream.units(0, 0)[0]
    texts = shard_set.read_row_group(unit.group).column("text").to_pylist()
    order = np.random.default_rng([0, 0, unit.group.file_index, unit.group.index]).permutation(len(texts))
    assert stream.row_order(0, unit).tolist() == order.tolist()  # one part: the row group's whole order
    first = tokenizer.encode(texts[order[0]]).ids + [stream.eos]
    assert joined[: len(first)].tolist() == first[: len(joined)]


@pytest.mark.parametrize("lanes", [1, 3])
def test_resuming_from_state_gives_the_same_windows(curated_logs, tokenizer, lanes):
    stream = _stream(curated_logs, tokenizer, lanes=lanes, seed=7)
    for _ in range(123):
        next(stream)
    state = stream.state_dict()
    expected = [next(stream) for _ in range(60)]
    resumed = _stream(curated_logs, tokenizer, lanes=lanes, seed=7, state=state)
    assert all(np.array_equal(a, b) for a, b in zip(expected, (next(resumed) for _ in range(60))))


def test_lanes_mix_documents_within_a_batch(curated_man, tokenizer):
    stream = _stream(curated_man, tokenizer, lanes=4)
    assert stream.num_lanes == 4
    assert len({stream.units(0, lane)[0] for lane in range(4)}) == 4
    windows = [next(stream) for _ in range(4)]  # one batch: one window from each lane's document
    assert len({w.tobytes() for w in windows}) == 4


def test_epochs_wrap_and_reshuffle(curated_man, tokenizer):
    stream = _stream(curated_man, tokenizer, seq_len=256)
    while stream.epoch == 0:
        next(stream)
    assert stream.units(0) != stream.units(1)  # a new row-group order each epoch
    assert sorted(map(str, stream.units(0))) == sorted(map(str, stream.units(1)))


def test_ranks_read_disjoint_row_groups(curated_logs, tokenizer):
    shard_set = ShardSet.open(curated_logs)
    parts = [_stream(curated_logs, tokenizer, rank=r, world_size=3).units(0) for r in range(3)]
    units = [u for part in parts for u in part]
    assert len(units) == len(set(units)) == len(shard_set.row_groups)


def test_held_out_documents_never_reach_training(curated_logs, tokenizer):
    shard_set = ShardSet.open(curated_logs)
    ids = [i for g in shard_set.row_groups for i in shard_set.read_row_group(g, ["id"]).column(0).to_pylist()]
    held = {i for i in ids if is_held_out(i, 0.1)}
    assert 0.05 < len(held) / len(ids) < 0.15
    train = _stream(curated_logs, tokenizer, split=TRAIN, held_out_fraction=0.1)
    held_out = _stream(curated_logs, tokenizer, split=HELD_OUT, held_out_fraction=0.1)
    assert train.keeps(ids[0]) != held_out.keeps(ids[0])
    seen = set()
    for position, _ in train._lanes[0]._documents:  # every document the lane reads, not only where windows start
        if position.epoch:
            break
        seen.add((position.unit, position.row))
    assert len(seen) == len(ids) - len(held)


def test_mixture_follows_weights_and_resumes(curated_man, curated_logs, tokenizer):
    def mixture(state=None):
        m = DataMixture([_stream(curated_man, tokenizer, lanes=2), _stream(curated_logs, tokenizer, lanes=2)], [1.0, 3.0])
        if state:
            m.load_state_dict(state)
        return m

    first = mixture()
    batch = first.next_batch(40)
    assert batch.shape == (40, 65) and batch.dtype == torch.int64
    assert first.counts == [10, 30]
    state = first.state_dict()
    torch.testing.assert_close(first.next_batch(16), mixture(state).next_batch(16))


def test_document_layout():
    tokens = torch.tensor([[5, 6, 0, 7, 0, 0, 8], [0, 1, 2, 3, 4, 5, 6]])
    doc_ids, positions = document_layout(tokens, eos_id=0)
    assert doc_ids.tolist() == [[0, 0, 0, 1, 1, 2, 3], [0, 1, 1, 1, 1, 1, 1]]
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0, 0], [0, 0, 1, 2, 3, 4, 5]]


def test_a_changed_shard_is_refused_when_opened(curated_logs, tmp_path):
    import shutil

    from sigma.shards import CorruptShardError

    copy = tmp_path / "run"
    shutil.copytree(curated_logs, copy)
    ShardSet.open(copy)
    shard = sorted((copy / "shards").glob("*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match=shard.name):
        ShardSet.open(copy)
    assert ShardSet.open(copy, verify=False).files  # an explicit opt-out reads it as it is


def test_a_few_documents_feed_every_lane_and_rank(tmp_path):
    """One row group of 3 documents: 8 lanes shrink to the 1 unit there is, 2 ranks share its
    documents (each epoch a different half each), and both resume exactly."""
    folder = write_small_corpus(tmp_path / "small", ["a", "b", "c"])
    tokenizer = load_tokenizer(train_on_shards([folder], 300, tmp_path))
    stream = _stream(folder, tokenizer, lanes=8, seq_len=32)
    assert stream.num_lanes == 1
    windows = []
    while stream.epoch < 2 and len(windows) < 20_000:  # several epochs of three documents, however long
        windows.append(next(stream))
    assert stream.epoch >= 2 and all(w.shape == (33,) for w in windows)

    ranks = [_stream(folder, tokenizer, lanes=8, rank=r, world_size=2) for r in range(2)]
    ids = ShardSet.open(folder).read_row_group(stream.units(0)[0].group, ["id"]).column(0).to_pylist()
    for epoch in range(3):
        shares = [{ids[i] for u in r.units(epoch) for i in r.row_order(epoch, u)} for r in ranks]
        assert shares[0] and shares[1] and not shares[0] & shares[1] and shares[0] | shares[1] == {"a", "b", "c"}
    for rank in ranks:
        for _ in range(40):
            next(rank)
        state = rank.state_dict()
        expected = [next(rank) for _ in range(20)]
        resumed = _stream(folder, tokenizer, lanes=8, rank=rank.rank, world_size=2, state=state)
        assert all(np.array_equal(a, b) for a, b in zip(expected, (next(resumed) for _ in range(20))))


def test_a_lane_whose_row_groups_are_all_held_out_moves_on(tmp_path):
    """Row groups of one document each, one of them held out: the lane that draws it reads the
    next epoch instead of stopping the run."""
    fraction = 0.5
    names = [f"doc-{i}" for i in range(100)]
    ids = [i for i in names if not is_held_out(i, fraction)][:3] + [i for i in names if is_held_out(i, fraction)][:1]
    folder = write_small_corpus(tmp_path / "small", ids, row_group_rows=1)
    tokenizer = load_tokenizer(train_on_shards([folder], 300, tmp_path))
    stream = _stream(folder, tokenizer, lanes=4, seq_len=32, held_out_fraction=fraction)
    assert stream.num_lanes == 4
    shard_set = ShardSet.open(folder)
    held = next(lane for lane in range(4)
                if is_held_out(shard_set.read_row_group(stream.units(0, lane)[0].group, ["id"]).column(0)[0].as_py(), fraction))
    for _ in range(8):
        next(stream)
    assert stream._lanes[held].position.epoch >= 1
    assert all(lane.position.epoch == 0 for i, lane in enumerate(stream._lanes) if i != held)


def test_a_corpus_of_held_out_documents_is_one_clear_error(tmp_path):
    ids = [f"doc-{i}" for i in range(2000) if is_held_out(f"doc-{i}", 0.01)][:3]
    folder = write_small_corpus(tmp_path / "held", ids)
    tokenizer = load_tokenizer(train_on_shards([folder], 300, tmp_path))
    stream = _stream(folder, tokenizer, lanes=8, held_out_fraction=0.01)
    with pytest.raises(NoDocumentsError, match=r"held holds 3 document\(s\), all held out for evaluation"):
        next(stream)
