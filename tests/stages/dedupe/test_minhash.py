"""MinHash signatures and LSH bands against datasketch, on real man pages and logs."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from stages.dedupe import minhash as M
from stages.dedupe.normalise import text_mode
from stages.ingest.man import ManSource

EDGE_CASES = ["", "a b", "one two three", "x‐y ‘q’ “z” a×b", "Déjà VU, ÇA", "日本語　テキスト、です。", "y" * 300 + " z"]


@pytest.fixture
def texts(loghub, man_root) -> list[str]:
    """Real log chunks and lines, real rendered man pages, and edge cases, normalised."""
    texts = []
    for name in ("HDFS", "Linux", "OpenSSH"):
        lines = (loghub / name / f"{name}_2k.log").read_text(errors="replace").splitlines()
        texts += ["\n".join(lines[k:k + 40]) for k in (0, 400, 1200)] + lines[:5]
    source = ManSource("man", [str(man_root.parent)], sections=["1"], include=["ls", "grep", "cp", "tar"])
    for payload in source.plan():
        for result in source.read(payload):
            texts += result.kept["text"].to_pylist()
    return text_mode(pa.array(texts + EDGE_CASES, pa.large_string())).to_pylist()


def test_bulk_shingle_hashes_equal_the_one_at_a_time_reference(texts):
    hashes, offsets = M.shingle_hashes(pa.array(texts, pa.large_string()), 5)
    for i, text in enumerate(texts):
        expected = [M.shingle_hash32(s) for s in M.python_shingles(text, 5)]
        assert hashes[offsets[i]:offsets[i + 1]].tolist() == expected


@pytest.mark.parametrize("num_perm,seed,ngram", [(128, 1, 5), (64, 42, 3), (256, 7, 1)])
def test_signatures_equal_datasketch_default_minhash(texts, num_perm, seed, ngram):
    """`hashfunc: sha1` is datasketch's default: `MinHash(num_perm, seed).update(shingle)`."""
    hashes, offsets = M.sha1_shingle_hashes(texts, ngram)
    sigs = M.signatures(hashes, offsets, num_perm, seed)
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed)
        for shingle in M.python_shingles(text, ngram):
            m.update(shingle)
        assert np.array_equal(sigs[i], m.digest()), i


@pytest.mark.parametrize("num_perm,seed", [(128, 1), (96, 3)])
def test_fast_signatures_equal_datasketch_with_the_same_hash_function(texts, num_perm, seed):
    hashes, offsets = M.shingle_hashes(pa.array(texts, pa.large_string()), 5)
    sigs = M.signatures(hashes, offsets, num_perm, seed)
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed, hashfunc=M.shingle_hash32)
        m.update_batch(M.python_shingles(text, 5))
        assert np.array_equal(sigs[i], m.digest()), i


def test_empty_document_has_datasketchs_empty_signature():
    hashes, offsets = M.shingle_hashes(pa.array(["", "...", "word"], pa.large_string()), 5)
    sigs = M.signatures(hashes, offsets, 128, 1)
    assert np.array_equal(sigs[0], MinHash(num_perm=128, seed=1).digest())
    assert np.array_equal(sigs[1], sigs[0])
    assert not np.array_equal(sigs[2], sigs[0])  # a short document is one shingle of all its tokens


def test_tokens_never_cross_documents():
    docs = ["x y z", "", "", "one two", "three", ""]  # word bytes meet across empty documents
    hashes, offsets = M.shingle_hashes(pa.array(docs, pa.large_string()), 3)
    assert [hashes[offsets[i]:offsets[i + 1]].tolist() for i in range(len(docs))] == [
        [M.shingle_hash32(s) for s in M.python_shingles(d, 3)] for d in docs]
    a = M.token_hashes(pa.array(["alpha beta", "gamma"], pa.large_string()))
    b = M.token_hashes(pa.array(["alpha betagamma"], pa.large_string()))
    assert a[1].tolist() == [0, 2, 3]
    assert a[0][1] != b[0][1]
    assert a[0][:2].tolist() == M.token_hashes(pa.array(["alpha beta"], pa.large_string()))[0].tolist()


@pytest.mark.parametrize("threshold,num_perm", [(0.5, 128), (0.8, 128), (0.9, 64)])
def test_lsh_parameters_follow_datasketch(threshold, num_perm):
    assert M.optimal_params(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_lsh_candidates_equal_datasketch_minhashlsh(texts):
    rng = random.Random(0)
    docs = []
    for text in texts:
        docs.append(text)
        words = text.split(" ")
        for _ in range(2):  # near copies: a few words replaced
            w = list(words)
            for _ in range(max(1, len(w) // 100)):
                w[rng.randrange(len(w))] = "edited"
            docs.append(" ".join(w))
    hashes, offsets = M.shingle_hashes(pa.array(docs, pa.large_string()), 5)
    sigs = M.signatures(hashes, offsets, 128, 1)
    bands = M.band_hashes(sigs, 16, 8)
    nonempty = [i for i in range(len(docs)) if offsets[i + 1] > offsets[i]]
    ours = {(i, j) for i, j in itertools.combinations(nonempty, 2) if np.any(bands[i] == bands[j])}

    lsh = MinHashLSH(threshold=0.8, num_perm=128, params=(16, 8))
    minhashes = {i: MinHash(num_perm=128, seed=1, hashvalues=sigs[i], scheme="affine32") for i in nonempty}
    for i, m in minhashes.items():
        lsh.insert(i, m)
    theirs = {(min(i, j), max(i, j)) for i, m in minhashes.items() for j in lsh.query(m) if i != j}
    assert ours == theirs
    assert len(ours) > len(texts)  # the copies were found
