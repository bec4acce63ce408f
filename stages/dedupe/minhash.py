"""MinHash signatures and LSH bands for a whole batch of documents at once, in numpy.

MinHash (Broder 1997, "On the resemblance and containment of documents") with datasketch 2.0's
default permutation scheme ("affine32"): a shingle's 32-bit hash `h` is avalanched with the
MurmurHash3 finalizer, then permutation `i` maps it to `a[i] * h + b[i] mod 2^32`, with `a` odd;
the signature is the per-permutation minimum over the document's shingles. The parameters `a` and
`b` come from `numpy.random.RandomState(seed)` exactly as datasketch draws them, so a signature
here equals `datasketch.MinHash(num_perm, seed, hashfunc=...)` fed the same shingles.

Shingles are word n-grams over normalised text. Tokens are maximal runs of `[a-z0-9_]` and
non-ASCII bytes (the text is lower-cased before). Two shingle hash functions:

- `xxh` (the default, fast): each token is hashed once (a polynomial over its bytes, avalanched),
  and a shingle's hash combines its tokens' hashes, all vectorised; `shingle_hash32` computes the
  same value from a shingle's bytes (`b"tok1 tok2 ..."`), for use as datasketch's `hashfunc`.
- `sha1`: datasketch's default `sha1_hash32` of the shingle's bytes, one Python call per shingle
  (slow; for signatures interchangeable with datasketch's defaults).

A document with fewer tokens than the n-gram size has one shingle, of all its tokens; a document
with no token has the empty signature (all `2^32 - 1`, datasketch's empty state) and no bands.
LSH banding (Indyk & Motwani 1998; Leskovec et al., Mining of Massive Datasets ch. 3): `bands`
groups of `rows` signature values, each group hashed to 64 bits with its band index.
"""

from __future__ import annotations

import hashlib
import re
import struct
from functools import lru_cache

import numpy as np
import pyarrow as pa

from pipeline.exchange import fmix64

U32_MAX = np.uint32(0xFFFFFFFF)
HASHFUNCS = ("xxh", "sha1")
_MAX_TOKEN_HASHED = 255  # a token's hash covers its first 255 bytes and its full length

# MurmurHash3's 32-bit finalizer constants (the 64-bit one is pipeline.exchange.fmix64).
_M32 = (np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35))
_TOKEN_P = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it is a bijection mod 2^64
_MASK64 = (1 << 64) - 1
_LOW_BYTES = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [_MASK64], np.uint64)  # the first i bytes


def _splitmix64(n: int, seed: int) -> np.ndarray:
    out, x = [], seed
    for _ in range(n):
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out.append((z ^ (z >> 31)) | 1)
    return np.array(out, dtype=np.uint64)


_SHINGLE_C = _splitmix64(64, 0x5167)  # per-position multipliers of a shingle's token hashes
_BAND_C = _splitmix64(256, 0xB4D5)  # per-row multipliers of a band's values
_BAND_SALT = _splitmix64(1024, 0x5A17)  # per-band salt, so equal rows in two bands differ


def fmix32(x: np.ndarray) -> np.ndarray:
    """datasketch's pre-mix of a 32-bit hash before the affine permutations."""
    x = x ^ (x >> np.uint32(16))
    x = x * _M32[0]
    x = x ^ (x >> np.uint32(13))
    x = x * _M32[1]
    return x ^ (x >> np.uint32(16))


def _fmix64_int(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _MASK64
    return x ^ (x >> 33)


# -- tokens and shingles ---------------------------------------------------------------------


def text_bytes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array and its offsets (rebased to 0), without copying."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if pa.types.is_string(texts.type) or pa.types.is_binary(texts.type):
        texts = texts.cast(pa.large_binary())
    texts = texts.fill_null("") if texts.null_count else texts
    offsets = np.frombuffer(texts.buffers()[1], np.int64)[texts.offset: texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    data = data[offsets[0]: offsets[-1]]
    return data, offsets - offsets[0]


def _separator_bytes(data: np.ndarray) -> np.ndarray:
    """Positions of the bytes of non-ASCII punctuation and symbols (U+00A0-U+00BF, U+00D7,
    U+00F7, U+2000-U+2BFF, U+3000-U+303F, U+FE30-U+FE4F, U+FF01-U+FF0F): they separate words."""
    lead = np.flatnonzero(data[:-1] >= 0xC2) if len(data) > 1 else np.zeros(0, np.int64)
    if len(lead) == 0:
        return lead
    b0, b1 = data[lead], data[lead + 1]
    two = ((b0 == 0xC2) & (b1 >= 0xA0)) | ((b0 == 0xC3) & ((b1 == 0x97) | (b1 == 0xB7)))
    three = (((b0 == 0xE2) & (b1 >= 0x80) & (b1 <= 0xAF)) | ((b0 == 0xE3) & (b1 == 0x80)))
    if np.any(b0 == 0xEF):
        b2 = data[np.minimum(lead + 2, len(data) - 1)]
        three |= (b0 == 0xEF) & (((b1 == 0xB8) & (b2 >= 0xB0)) | ((b1 == 0xB9) & (b2 <= 0x8F))
                                 | ((b1 == 0xBC) & (b2 >= 0x81) & (b2 <= 0x8F)))
    two, three = lead[two], lead[three]
    return np.concatenate([two, two + 1, three, three + 1, np.minimum(three + 2, len(data) - 1)])


def word_bytes(data: np.ndarray) -> np.ndarray:
    """Which bytes belong to words: `[a-z0-9_]` and non-ASCII characters other than punctuation
    and symbols (the text is lower-cased before)."""
    word = (data - np.uint8(97)) < 26  # a-z
    word |= (data - np.uint8(48)) < 10  # 0-9
    word |= data >= 0x80
    word |= data == 95  # _
    word[_separator_bytes(data)] = False
    return word


def token_hashes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Hash every token of every document: (uint64 hashes in document order, per-document
    token offsets of length `len(texts) + 1`)."""
    data, offsets = text_bytes(texts)
    n = len(data)
    word = word_bytes(data)
    changes = np.flatnonzero(word[1:] != word[:-1]) + 1
    edges = np.concatenate([[0] if n and word[0] else [], changes, [n] if n and word[-1] else []]).astype(np.int64)
    starts, ends = edges[0::2], edges[1::2]
    del word, changes, edges
    inner = offsets[1:-1]
    inner = inner[(inner > 0) & (inner < n)]
    if len(inner):  # a token never runs across two documents: cut the ones that would
        at = np.searchsorted(starts, inner, side="right") - 1
        cut = np.unique(inner[(at >= 0) & (ends[np.maximum(at, 0)] > inner) & (starts[np.maximum(at, 0)] < inner)])
        if len(cut):
            starts = np.insert(starts, np.searchsorted(starts, cut), cut)
            ends = np.insert(ends, np.searchsorted(ends, cut), cut)
    lengths = ends - starts
    hashed = np.minimum(lengths, _MAX_TOKEN_HASHED)
    padded = np.concatenate([data, np.zeros(8, np.uint8)])
    words = np.ndarray(shape=(n,), dtype=np.uint64, buffer=padded, strides=(1,))  # 8 bytes from any offset
    h = (words[starts] & _LOW_BYTES[np.minimum(hashed, 8)]) * _TOKEN_P
    long = np.flatnonzero(hashed > 8)  # most tokens fit in one 8-byte chunk; the rest go on
    if len(long):
        long = long[np.argsort(~hashed[long].astype(np.uint8), kind="stable")]  # longest first
        chunks = (hashed[long] + 7) // 8
        pos, left, hl = starts[long], hashed[long], h[long]
        for k in range(1, int(chunks[0])):
            m = int(np.count_nonzero(chunks > k))
            chunk = words[pos[:m] + 8 * k] & _LOW_BYTES[np.minimum(left[:m] - 8 * k, 8)]
            hl[:m] = (hl[:m] ^ chunk) * _TOKEN_P
        h[long] = hl
    out = fmix64(h + lengths.astype(np.uint64))
    doc_tokens = np.searchsorted(starts, offsets, side="left")
    return out, doc_tokens


def shingle_hashes(texts: pa.Array, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every word n-gram of every document (duplicates included; they do not
    change a MinHash): (uint32 hashes, per-document offsets of length `len(texts) + 1`)."""
    th, tok_off = token_hashes(texts)
    counts = np.diff(tok_off)
    full = counts >= ngram
    n_sh = np.where(full, counts - ngram + 1, np.minimum(counts, 1))
    sh_off = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(n_sh, out=sh_off[1:])
    total = int(sh_off[-1])
    out = np.empty(total, np.uint64)
    short = np.flatnonzero(~full & (counts > 0))
    if len(th) >= ngram:
        # every window of `ngram` consecutive tokens, then drop those that cross into the next document
        windows = th[: len(th) - ngram + 1] * _SHINGLE_C[0]
        for k in range(1, ngram):
            windows += th[k: len(th) - ngram + 1 + k] * _SHINGLE_C[k]
        inside = np.ones(len(windows), bool)
        for k in range(1, ngram):
            ends = tok_off[1:] - k
            mark = ends[(counts >= k) & (ends < len(windows))]
            inside[mark] = False
        if len(short):
            slots = np.ones(total, bool)
            slots[sh_off[:-1][short]] = False
            out[slots] = windows[inside]
        else:
            out[:] = windows[inside]
    if len(short):
        acc = np.zeros(len(short), np.uint64)
        start, cnt = tok_off[:-1][short], counts[short]
        for k in range(ngram - 1):
            has = cnt > k
            acc[has] += th[start[has] + k] * _SHINGLE_C[k]
        out[sh_off[:-1][short]] = acc
    return (fmix64(out) >> np.uint64(32)).astype(np.uint32), sh_off


_SEPARATORS = re.compile("[\u00a0-\u00bf\u00d7\u00f7\u2000-\u2bff\u3000-\u303f\ufe30-\ufe4f\uff01-\uff0f]")
_WORD = re.compile("[a-z0-9_\u0080-\U0010ffff]+")


def python_tokens(text: str) -> list[bytes]:
    """The tokens of one normalised text, as `token_hashes` sees them (reference, slow)."""
    return [t.encode("utf-8") for t in _WORD.findall(_SEPARATORS.sub(" ", text))]


def python_shingles(text: str, ngram: int) -> list[bytes]:
    """The word n-grams of one normalised text as bytes `b"tok1 tok2 ..."` (reference, slow)."""
    toks = python_tokens(text)
    if not toks:
        return []
    if len(toks) < ngram:
        return [b" ".join(toks)]
    return [b" ".join(toks[i: i + ngram]) for i in range(len(toks) - ngram + 1)]


def token_hash64(token: bytes) -> int:
    h = 0
    head = token[:_MAX_TOKEN_HASHED]
    for k in range(0, len(head), 8):
        h = ((h ^ int.from_bytes(head[k: k + 8], "little")) * 0x9E3779B97F4A7C15) & _MASK64
    return _fmix64_int((h + len(token)) & _MASK64)


def shingle_hash32(shingle: bytes) -> int:
    """The `xxh` hash of one shingle (`b"tok1 tok2 ..."`), as computed in bulk by
    `shingle_hashes`; usable as datasketch's `hashfunc`."""
    acc = 0
    for k, tok in enumerate(shingle.split(b" ")):
        acc = (acc + token_hash64(tok) * int(_SHINGLE_C[k])) & _MASK64
    return _fmix64_int(acc) >> 32


def sha1_hash32(data: bytes) -> int:
    """datasketch's default hash function (`datasketch.hashfunc.sha1_hash32`)."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def sha1_shingle_hashes(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Like `shingle_hashes` with datasketch's default hash (one Python call per shingle)."""
    hashes, offsets = [], [0]
    for text in texts:
        sh = python_shingles(text or "", ngram)
        hashes += [sha1_hash32(s) for s in sh]
        offsets.append(len(hashes))
    return np.array(hashes, np.uint32), np.array(offsets, np.int64)


# -- permutations and signatures --------------------------------------------------------------


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch 2.0's affine32 parameters for (num_perm, seed): `a` odd, `b` any, uint32."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, shape (documents, num_perm), uint32, from 32-bit shingle hashes grouped
    per document by `offsets`. Each permutation is one vectorised pass and one `reduceat`."""
    a, b = permutations(num_perm, seed)
    docs = len(offsets) - 1
    out = np.full((docs, num_perm), U32_MAX, np.uint32)
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    if len(nonempty) == 0:
        return out
    h = fmix32(hashes.astype(np.uint32, copy=False))
    starts = offsets[:-1][nonempty]
    tmp = np.empty_like(h)
    cols = np.empty((num_perm, len(nonempty)), np.uint32)
    for i in range(num_perm):
        np.multiply(h, a[i], out=tmp)
        tmp += b[i]
        cols[i] = np.minimum.reduceat(tmp, starts)
    out[nonempty] = cols.T
    return out


# -- LSH ---------------------------------------------------------------------------------------


def band_hashes(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band): the band's `rows` values hashed with the band index, so
    two documents share a key exactly when a band of theirs agrees (up to 64-bit collisions)."""
    if bands * rows > sigs.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows needs {bands * rows} values; signatures have {sigs.shape[1]}")
    v = sigs[:, : bands * rows].astype(np.uint64).reshape(len(sigs), bands, rows)
    acc = np.zeros((len(sigs), bands), np.uint64)
    for j in range(rows):
        acc += v[:, :, j] * _BAND_C[j]
    return fmix64(acc ^ _BAND_SALT[:bands])


def _integrate(f, lo: float, hi: float, steps: int = 2000) -> float:
    x = np.linspace(lo, hi, steps + 1)
    y = f(x)
    return float((hi - lo) / steps / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum()))


def optimal_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """Bands and rows minimising the weighted false positive and false negative areas under the
    LSH S-curve around `threshold`: datasketch's `MinHashLSH` parameter choice."""
    best, opt = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integrate(lambda s: 1 - (1 - s ** r) ** b, 0.0, threshold)
            fn = _integrate(lambda s: (1 - s ** r) ** b, threshold, 1.0)
            err = fp * weights[0] + fn * weights[1]
            if err < best:
                best, opt = err, (b, r)
    return opt


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that a pair with this Jaccard similarity shares at least one band."""
    return 1 - (1 - similarity ** rows) ** bands
