"""The order arms read a variant in, and the bundle's token streams: pieces give the text back, the
order is a fixed hash order that two variants share, a pool stores shared text once, and token
windows are seeded, resumable and counted by where they came from."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.ablate_bundle import Pool, ordered_pieces
from jobs.ablate_order import pieces
from sigma.shards import sha256_file
from sigma.token_stream import STREAM_FILE, TokenWindows
from sigma.tokenizer import end_of_text_id, train_tokenizer


def _curated(root: Path, docs: list[dict]) -> Path:
    """A folder laid out as a curate output: one shard, a manifest naming it and a stage list."""
    (root / "shards").mkdir(parents=True)
    shard = root / "shards" / "part-00000.parquet"
    columns = {k: [d[k] for d in docs] for k in ("id", "text", "kind")}
    columns |= {"source": ["test"] * len(docs), "uri": [d["id"] for d in docs], "meta": ["{}"] * len(docs),
                "decontam.suite": ["abc"] * len(docs)}
    pq.write_table(pa.table(columns), shard, row_group_size=4)
    files = [{"path": "shards/part-00000.parquet", "rows": len(docs), "bytes": shard.stat().st_size,
              "sha256": sha256_file(shard)}]
    stages = [{"name": "decontaminate", "options": {"suite": "suite.yaml"}}]
    (root / "manifest.json").write_text(json.dumps({"config_hash": "h", "config": {"stages": stages}, "files": files}))
    return root


@pytest.fixture(scope="module")
def docs(loghub) -> list[dict]:
    out = []
    for system, kind in (("OpenSSH", "log"), ("Apache", "config"), ("Linux", "doc")):
        lines = (loghub / system / f"{system}_2k.log").read_text().splitlines()
        out += [{"id": f"{system}-{i}", "text": "\n".join(lines[i * 40:(i + 1) * 40]), "kind": kind} for i in range(4)]
    return out


def test_pieces_give_the_text_back_and_end_at_line_ends():
    text = "".join(f"line {i} " + "x" * (i % 50) + "\n" for i in range(200))
    cut = pieces(text, 300)
    assert "".join(cut) == text and len(cut) > 10
    assert all(len(p) <= 300 and p.endswith("\n") for p in cut)
    assert pieces("y" * 700, 300) == ["y" * 300, "y" * 300, "y" * 100]  # no line end: cut at the limit
    assert pieces("", 300) == [""]


def test_the_order_is_a_fixed_hash_order_that_variants_share(docs, tmp_path):
    keyed, corpus = ordered_pieces(_curated(tmp_path / "a", docs), 512)
    again, _ = ordered_pieces(_curated(tmp_path / "b", docs), 512)
    fewer, _ = ordered_pieces(_curated(tmp_path / "c", docs[::2]), 512)
    assert keyed == again and corpus["documents"] == len(docs) and corpus["decontaminated_against"] == ["abc"]
    kept = {text for _, text, _ in fewer}
    assert [t for _, t, _ in keyed if t in kept] == [t for _, t, _ in fewer]  # a shared document, the same place
    kinds = [g for _, _, g in keyed]
    assert kinds != sorted(kinds) and set(kinds) == {"test:log", "test:config", "test:doc"}
    assert sum(len(t.encode()) for _, t, _ in keyed) == corpus["bytes"]


def _stream(folder: Path, pool: Pool, indices: list[int], eos: int) -> Path:
    folder.mkdir(parents=True)
    np.save(folder / "pieces.npy", np.array(indices, dtype=np.int32))
    (folder / STREAM_FILE).write_text(json.dumps({"pool": "../pool", "eos": eos}))
    return folder


def test_a_pool_shares_text_and_windows_resume_and_count(docs, tmp_path):
    tokenizer = train_tokenizer((d["text"] for d in docs), 300)
    eos = end_of_text_id(tokenizer)
    keyed, _ = ordered_pieces(_curated(tmp_path / "v", docs), 512)
    pool = Pool(tokenizer, eos)
    first = pool.add([t for _, t, _ in keyed], [g for _, _, g in keyed])
    second = pool.add([t for _, t, _ in keyed[::2]], [g for _, _, g in keyed[::2]])
    assert second == first[::2] and len(pool.arrays) == len(keyed)  # shared text is stored once
    pool.write(tmp_path / "pool", lambda message: None)
    folder = _stream(tmp_path / "s", pool, first, eos)
    assert tokenizer.decode([int(t) for t in np.concatenate([pool.arrays[i] for i in first]) if t != eos]) \
        == tokenizer.decode([int(t) for t in TokenWindows(folder, 16).folder.tokens if t != eos])

    stream = TokenWindows(folder, 32, seed=3)
    windows = [next(stream) for _ in range(2 * stream.num_windows + 5)]  # two epochs and a few windows
    assert stream.state_dict() == {"epoch": 2, "index": 5}
    resumed = TokenWindows(folder, 32, seed=3)
    resumed.load_state_dict({"epoch": 1, "index": 7})
    assert all((a == b).all() for a, b in zip(windows[stream.num_windows + 7:], [next(resumed) for _ in range(10)]))
    assert not all((a == b).all() for a, b in zip(windows, [next(TokenWindows(folder, 32, seed=4)) for _ in range(5)]))
    read = stream.tokens_read_by_group(stream.state_dict())
    assert sum(read.values()) == 32 * len(windows) and set(read) == {"test:log", "test:config", "test:doc"}
    with pytest.raises(ValueError, match="outside the vocabulary"):
        TokenWindows(folder, 32, vocab_size=10)
    (tmp_path / "pool" / "tokens.u16.xz").write_bytes(b"changed")
    from sigma.token_stream import read_pool

    read_pool.cache_clear()
    with pytest.raises(ValueError, match="sha256 differs"):
        TokenWindows(folder, 32)
