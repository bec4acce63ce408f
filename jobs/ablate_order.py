"""The order an arm reads its variant in: pieces of documents in a fixed hash order.

The trainer reads a shard folder by row groups in a seeded order. A curate output's row groups
hold a thousand documents each, in the order they were read (all of `/var/log`, then all of
`/etc`...), and one document can be a 1 MB log: a budget smaller than the corpus then trains on a
handful of row groups and documents, and the kinds it sees depend on the shard order and on a few
long files, not on the recipe. So each variant is written once more in a fixed random order:
documents cut into pieces of at most `piece_chars` characters (at a line end where there is one),
the pieces ordered by a hash of (document id, piece index). Any stretch of that order is a random
sample of the variant's text, and a document two variants share is drawn at the same place in
both, so two variants differ in what their recipes kept, not in the draw (jobs/ablate_bundle.py
writes each variant's sample in this order).
"""

from __future__ import annotations

import hashlib


def pieces(text: str, piece_chars: int) -> list[str]:
    """`text` cut into consecutive pieces of at most `piece_chars` characters, each ending at the
    last line end inside that length where there is one; joined they give `text` back."""
    out, start = [], 0
    while len(text) - start > piece_chars:
        end = text.rfind("\n", start, start + piece_chars) + 1
        if end <= start:
            end = start + piece_chars
        out.append(text[start:end])
        start = end
    if start < len(text) or not out:
        out.append(text[start:])
    return out


def order_key(doc_id: str, index: int) -> bytes:
    return hashlib.blake2b(f"{doc_id}\x00{index}".encode(), digest_size=8).digest()


def group(source: str | None, kind: str | None) -> str:
    """What the read mix is counted by: source and kind (`man:doc` is not `file:doc`)."""
    return f"{source or 'unknown'}:{kind or 'other'}"
