"""An ablation's bundle: everything its arms train and are scored on, in one folder that needs
neither Ray nor the curation's outputs, so it can be copied to a GPU machine in one go.

    bundle/
      bundle.json            the ablation's name, the training settings, every arm, the suite's name
                             and hash, each variant's corpus and sample, and every file's sha256
      tokenizer.json         the ablation's tokenizer
      suite/                 the eval suite as built (documents.jsonl, mc.jsonl, held_out.json, suite.json)
      pool/                  every distinct piece of text of every variant's sample, as token ids:
                             tokens.u16.xz, offsets.npy, groups.npy, pool.json (sigma/token_stream.py)
      streams/<variant>/     stream.json and pieces.npy: the variant's sample, in order

A variant's sample is its first `tokens_per_variant` tokens in the fixed random order of pieces
(jobs/ablate_order.py): the same number for every variant, so every arm repeats its sample the same
number of times, and a random sample of the variant's text. A piece two variants share (the same
text: a document neither redaction nor a filter changed) is stored once, which is what makes five
variants fit: that is also why the order is the same draw for every variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from jobs.ablate_order import group, order_key, pieces
from sigma.shards import ShardSet, sha256_file
from sigma.token_stream import POOL_TOKENS, STREAM_FILE

BUNDLE_FILE = "bundle.json"
ENCODE_BATCH = 256


def ordered_pieces(variant_dir: Path, piece_chars: int) -> tuple[list[tuple[bytes, str, str]], dict]:
    """The variant's pieces in the fixed random order, as (key, text, group), and its corpus's
    documents, bytes by group and the suite hashes its rows were decontaminated against."""
    keyed, by_group, suites, documents = [], Counter(), set(), 0
    shard_set = ShardSet.open(variant_dir)
    for path in shard_set.files:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        columns = ["id", "text", "source", "kind"] + (["decontam.suite"] if "decontam.suite" in names else [])
        table = pq.read_table(path, columns=columns)
        values = {c: table.column(c).to_pylist() for c in columns}
        suites.update(values.get("decontam.suite", [None] * table.num_rows))
        for doc_id, text, source, kind in zip(values["id"], values["text"], values["source"], values["kind"]):
            documents += 1
            g = group(source, kind)
            by_group[g] += len((text or "").encode())
            for k, piece in enumerate(pieces(text or "", piece_chars)):
                keyed.append((order_key(doc_id, k), piece, g))
    keyed.sort(key=lambda item: item[0])
    return keyed, {"documents": documents, "pieces": len(keyed), "bytes": sum(by_group.values()),
                   "bytes_by_group": dict(sorted(by_group.items())), "decontaminated_against": sorted(map(str, suites))}


class Pool:
    """Distinct pieces of text as token ids, each encoded once whichever variants hold it."""

    def __init__(self, tokenizer, eos: int):
        self.tokenizer, self.eos = tokenizer, eos
        self.index: dict[bytes, int] = {}
        self.arrays: list[np.ndarray] = []
        self.groups: list[str] = []

    def add(self, texts: list[str], groups: list[str]) -> list[int]:
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        new = [i for i, k in enumerate(keys) if k not in self.index]
        encoded = self.tokenizer.encode_batch([texts[i] for i in new]) if new else []
        for i, encoding in zip(new, encoded):
            if keys[i] in self.index:  # the same text twice in one batch
                continue
            self.index[keys[i]] = len(self.arrays)
            self.arrays.append(np.array(encoding.ids + [self.eos], dtype=np.uint16))
            self.groups.append(groups[i])
        return [self.index[k] for k in keys]

    def write(self, folder: Path, progress) -> dict:
        folder.mkdir(parents=True, exist_ok=True)
        names = sorted(set(self.groups))
        tokens = np.concatenate(self.arrays) if self.arrays else np.zeros(0, dtype=np.uint16)
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in self.arrays])]).astype(np.int64)
        progress(f"bundle: compressing {len(tokens):,} pool tokens (xz)")
        raw = lzma.compress(tokens.astype("<u2").tobytes(), preset=6)
        (folder / POOL_TOKENS).write_bytes(raw)
        np.save(folder / "offsets.npy", offsets)
        np.save(folder / "groups.npy", np.array([names.index(g) for g in self.groups], dtype=np.int16))
        meta = {"tokens": int(len(tokens)), "pieces": len(self.arrays), "groups": names,
                "sha256": hashlib.sha256(raw).hexdigest(), "compressed_bytes": len(raw)}
        (folder / "pool.json").write_text(json.dumps(meta, indent=1) + "\n")
        return meta


def write_bundle(root: Path, variant_dirs: dict[str, Path], tokenizer_path: Path, suite, config, progress=print) -> Path:
    """Write the bundle of an ablation into ``root / "bundle"`` (replacing an earlier one there) and
    return its folder. ``config``: the ablation (``AblateConfig``)."""
    from jobs.ablate_arms import arm_specs, train_config
    from sigma.tokenizer import end_of_text_id, load_tokenizer

    out = root / "bundle"
    tmp = root / ".bundle.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = load_tokenizer(tokenizer_path)
    eos = end_of_text_id(tokenizer)
    if tokenizer.get_vocab_size() > 65536:
        raise ValueError(f"a bundle stores token ids as uint16: vocabulary {tokenizer.get_vocab_size()} is too large")
    pool = Pool(tokenizer, eos)
    limit = config.bundle.tokens_per_variant
    variants = {}
    for name, folder in variant_dirs.items():
        progress(f"bundle: variant {name}: ordering its pieces, then encoding {'all' if limit is None else f'{limit:,} tokens'}")
        keyed, corpus = ordered_pieces(folder, config.order.piece_chars)
        if corpus["decontaminated_against"] != [suite.hash]:
            raise ValueError(f"variant {name} ({folder}) was not decontaminated against suite {suite.name} "
                             f"({suite.hash[:12]}) on every row: {corpus['decontaminated_against']}")
        chosen, tokens, at = [], 0, 0
        while at < len(keyed) and (limit is None or tokens < limit):
            batch = keyed[at : at + ENCODE_BATCH]
            at += len(batch)
            for index in pool.add([text for _, text, _ in batch], [g for _, _, g in batch]):
                if limit is not None and tokens >= limit:
                    break
                chosen.append(index)
                tokens += len(pool.arrays[index])
        stream = tmp / "streams" / name
        stream.mkdir(parents=True)
        np.save(stream / "pieces.npy", np.array(chosen, dtype=np.int32))
        sample_groups, digest = Counter(), hashlib.sha256()
        for index in chosen:
            sample_groups[pool.groups[index]] += len(pool.arrays[index])
            digest.update(pool.arrays[index].astype("<u2").tobytes())
        (stream / STREAM_FILE).write_text(json.dumps({"pool": "../../pool", "eos": eos, "variant": name, "tokens": tokens,
                                                      "suite": {"name": suite.name, "hash": suite.hash}}, indent=1) + "\n")
        variants[name] = {**corpus, "sample_pieces": len(chosen), "sample_tokens": tokens,
                          "sample_whole": len(chosen) == len(keyed), "sample_sha256": digest.hexdigest(),
                          "sample_tokens_by_group": dict(sorted(sample_groups.items()))}
        progress(f"bundle: variant {name}: {len(chosen):,} of {len(keyed):,} pieces, {tokens:,} tokens")
    pool_meta = pool.write(tmp / "pool", progress)
    shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")
    shutil.copytree(suite.path, tmp / "suite")
    workers = config.train.ray.workers if config.train.ray else 1
    seeds_train = {str(seed): train_config(config.train.config, config.train.overrides, config.train.tokens, seed, workers)
                   for seed in config.seeds}
    settings = {
        "name": config.name, "baseline": config.baseline, "variants": list(config.variants), "seeds": config.seeds,
        "lr_scales": config.train.lr_scales, "budget": config.train.tokens, "train_configs": seeds_train,
        "score": config.score.model_dump(mode="json"), "device": config.train.device,
        "ray": dataclasses.asdict(config.train.ray) if config.train.ray else None,
        "arms": {"concurrency": config.arms.concurrency, "num_cpus": config.arms.num_cpus},
        "samples": {name: v["sample_sha256"] for name, v in variants.items()},
    }
    body = {"format": 1, "settings": settings, "suite": {"name": suite.name, "hash": suite.hash},
            "pool": pool_meta, "variants": variants, "arms": arm_specs(settings)}
    body["files"] = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    (tmp / BUNDLE_FILE).write_text(json.dumps(body, indent=1) + "\n")
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    if config.bundle.max_mib is not None and size > config.bundle.max_mib * 2**20:
        raise ValueError(f"the bundle is {size / 2**20:.1f} MiB, over bundle.max_mib {config.bundle.max_mib}: lower "
                         "bundle.tokens_per_variant")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    progress(f"bundle: {out} ({size / 2**20:.1f} MiB: pool {pool_meta['tokens']:,} tokens in "
             f"{pool_meta['compressed_bytes'] / 2**20:.1f} MiB)")
    return out


def verify_bundle(folder: Path) -> dict:
    """The bundle's ``bundle.json``, after checking every file it lists against its sha256."""
    path = Path(folder) / BUNDLE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{folder}: no {BUNDLE_FILE}: not an ablation bundle (`sigma ablate prepare` writes one)")
    body = json.loads(path.read_text())
    for name, digest in body["files"].items():
        file = Path(folder) / name
        if not file.exists() or sha256_file(file) != digest:
            raise ValueError(f"{file}: {'missing' if not file.exists() else 'changed'} since the bundle was written")
    return body


if __name__ == "__main__":  # python -m jobs.ablate_bundle BUNDLE: check a copied bundle
    print(json.dumps(verify_bundle(Path(sys.argv[1]))["settings"]["variants"]))
