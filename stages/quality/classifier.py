"""fastText classifiers trained from seed documents: the system-domain classifier and the quality
classifier (Joulin et al. 2016, "Bag of Tricks for Efficient Text Classification"), as DCLM
(Li et al. 2024) and Dolma (Soldaini et al. 2024) train and apply them: score every document into
a column, threshold in a separate decision.

Training cuts every seed document into passages of about `passage_chars` characters at line
boundaries, so short negatives (quotations) and long positives (manuals) give examples of the
same length and the model cannot learn length instead of content. The held-out split is by
document (a hash of the seed's uri with the seed), so no passage of a held-out document is seen
in training. The model (`model.bin`, or `model.ftz` when quantized) is saved beside
`manifest.json`: the seeds, parameters, held-out
precision and recall, and the model's checksum.

`recall_loop` is DeepSeekMath's corpus-growing loop (Shao et al. 2024, section 2.1): train,
score a candidate pool, add its confident positives to the seeds, retrain; each round's numbers
are recorded.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xxhash

POSITIVE, NEGATIVE = "__label__pos", "__label__neg"
SPACE = re.compile(r"\s+")


@dataclass
class Seed:
    """A seed document: its text and where it came from (the uri decides the held-out split)."""

    text: str
    uri: str
    group: str = ""  # the seed set it came from, for the manifest


@dataclass
class TrainParams:
    epoch: int = 10
    lr: float = 0.5
    dim: int = 32
    word_ngrams: int = 2
    min_count: int = 2
    bucket: int = 100_000  # hashed word n-gram rows; fastText's 2M default makes a 500 MB model
    # a product-quantized `model.ftz`: a few MB, but fastText's in-process quantization was seen to
    # make later trainings in the same process fail with "Encountered NaN", so it is off by default
    quantize: bool = False
    passage_chars: int = 800
    max_passages_per_doc: int = 20
    holdout: float = 0.2
    threshold: float = 0.5
    seed: int = 0
    lr_used: float | None = None  # set by training: `lr`, halved on each diverged attempt


def one_line(text: str, max_chars: int | None = None) -> str:
    """What fastText reads: one lower-cased line (it predicts per line)."""
    return SPACE.sub(" ", (text if max_chars is None else text[:max_chars])).strip().lower()


def passages(text: str, chars: int, limit: int) -> list[str]:
    out, current, size = [], [], 0
    for line in text.split("\n"):
        current.append(line)
        size += len(line) + 1
        if size >= chars:
            out.append("\n".join(current))
            current, size = [], 0
            if len(out) >= limit:
                return [p for p in (one_line(x) for x in out) if p]
    if current and (size >= chars // 4 or not out):
        out.append("\n".join(current))
    return [p for p in (one_line(x) for x in out) if p]


def is_held_out(uri: str, fraction: float, seed: int) -> bool:
    return xxhash.xxh3_64_intdigest(f"{seed}\x00{uri}".encode()) < fraction * 2**64


def load_fasttext():
    try:
        import fasttext
    except ImportError:
        raise RuntimeError("classifiers need fastText: pip install 'fasttext-numpy2-wheel>=0.9.2'") from None
    return fasttext


def model_file(path: str | Path) -> Path:
    """The model inside a model folder (`model.ftz` or `model.bin`), or the file itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.ftz", "model.bin"):
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"no model.ftz or model.bin in {path} (train one with `sigma classifier train`)")
    return path


class Classifier:
    """A trained model: `score(texts)` is the probability of the positive label for each text."""

    def __init__(self, model, max_chars: int = 4000):
        self.model, self.max_chars = model, max_chars

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        return cls(load_fasttext().load_model(str(model_file(path))))

    def score(self, texts: list[str]) -> np.ndarray:
        lines = [one_line(t or "", self.max_chars) for t in texts]
        return self.score_lines(lines)

    def score_lines(self, lines: list[str]) -> np.ndarray:
        out = np.zeros(len(lines), np.float32)
        todo = [i for i, line in enumerate(lines) if line]
        if not todo:
            return out
        labels, probs = self.model.predict([lines[i] for i in todo], k=2)
        for i, lab, prob in zip(todo, labels, probs):
            p = dict(zip(lab, prob))
            out[i] = min(1.0, float(p.get(POSITIVE, 1.0 - p.get(NEGATIVE, 1.0))))
        return out


@dataclass
class Metrics:
    precision: float
    recall: float
    f1: float
    positives: int
    negatives: int
    threshold: float
    negative_recall: float = 0.0  # the share of negatives scored under the threshold

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, threshold: float) -> Metrics:
        labels = labels.astype(bool)
        pred = scores >= threshold
        tp = int((pred & labels).sum())
        p = tp / max(int(pred.sum()), 1)
        r = tp / max(int(labels.sum()), 1)
        tn = int((~pred & ~labels).sum())
        return cls(round(p, 4), round(r, 4), round(2 * p * r / max(p + r, 1e-9), 4), int(labels.sum()),
                   int((~labels).sum()), threshold, round(tn / max(int((~labels).sum()), 1), 4))


@dataclass
class Split:
    train: list[tuple[str, bool]] = field(default_factory=list)
    held_out: list[tuple[str, bool]] = field(default_factory=list)


def split_seeds(positives: list[Seed], negatives: list[Seed], params: TrainParams) -> Split:
    split = Split()
    for seeds, label in ((positives, True), (negatives, False)):
        for s in seeds:
            target = split.held_out if is_held_out(s.uri, params.holdout, params.seed) else split.train
            target += [(p, label) for p in passages(s.text, params.passage_chars, params.max_passages_per_doc)]
    return split


def _train_in_child(train_file: str, model_out: str, kwargs: dict, quantize: bool) -> float:
    """Runs in a fresh process: train (halving lr when the loss diverges), save, return the lr used."""
    fasttext = load_fasttext()
    lr = kwargs.pop("lr")
    for attempt in range(4):
        try:
            model = fasttext.train_supervised(input=train_file, lr=lr, **kwargs)
            break
        except RuntimeError as exc:  # fastText stops on a diverging loss ("Encountered NaN")
            if "NaN" not in str(exc) or attempt == 3:
                raise
            lr /= 2
    if quantize:
        model.quantize(dsub=2, qnorm=True, thread=1, verbose=0)
    model.save_model(model_out)
    return lr


def fit(examples: list[tuple[str, bool]], params: TrainParams, workdir: Path) -> Classifier:
    """Train on (passage, label) pairs; deterministic for a given seed (one thread).

    Training runs in a fresh process: in a process that had already trained, loaded and applied
    other fastText models, `train_supervised` was seen to fail with "Encountered NaN" on data it
    trains on cleanly in a new process."""
    rows = list(examples)
    random.Random(params.seed).shuffle(rows)
    train_file = workdir / "train.txt"
    train_file.write_text("".join(f"{POSITIVE if y else NEGATIVE} {x}\n" for x, y in rows), encoding="utf-8")
    model_out = workdir / ("model.ftz" if params.quantize else "model.bin")
    kwargs = dict(lr=params.lr, epoch=params.epoch, dim=params.dim, wordNgrams=params.word_ngrams,
                  minCount=params.min_count, bucket=params.bucket, thread=1, seed=params.seed, verbose=0)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        params.lr_used = pool.submit(_train_in_child, str(train_file), str(model_out), kwargs, params.quantize).result()
    train_file.unlink()
    return Classifier.load(model_out)


def evaluate(model: Classifier, examples: list[tuple[str, bool]], threshold: float) -> Metrics:
    if not examples:
        return Metrics(0, 0, 0, 0, 0, threshold)
    scores = model.score_lines([x for x, _ in examples])
    return Metrics.of(scores, np.array([y for _, y in examples]), threshold)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _seed_summary(seeds: list[Seed]) -> dict:
    groups: dict[str, int] = {}
    for s in seeds:
        groups[s.group] = groups.get(s.group, 0) + 1
    return {"documents": len(seeds), "by_group": dict(sorted(groups.items()))}


def train(positives: list[Seed], negatives: list[Seed], output: str | Path, params: TrainParams | None = None,
          name: str = "classifier", extra: dict | None = None) -> dict:
    """Train, report held-out precision and recall, save the model and `manifest.json`."""
    params = params or TrainParams()
    if not positives or not negatives:
        raise ValueError("training needs positive and negative seeds")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.time()
    split = split_seeds(positives, negatives, params)
    model_path = output / ("model.ftz" if params.quantize else "model.bin")
    with tempfile.TemporaryDirectory(dir=output) as tmp:
        model = fit(split.train, params, Path(tmp))
        for stale in ("model.ftz", "model.bin"):
            (output / stale).unlink(missing_ok=True)
        os.replace(Path(tmp) / model_path.name, model_path)
    held_out = evaluate(model, split.held_out, params.threshold)
    manifest = {
        "name": name,
        "kind": "fasttext-supervised",
        "labels": {"positive": POSITIVE, "negative": NEGATIVE},
        "params": asdict(params),
        "seeds": {"positive": _seed_summary(positives), "negative": _seed_summary(negatives)},
        "passages": {"train": len(split.train), "held_out": len(split.held_out),
                     "train_positive": sum(y for _, y in split.train)},
        "held_out": asdict(held_out),
        "model": {"file": model_path.name, "sha256": _sha256(model_path), "bytes": model_path.stat().st_size},
        "seconds": round(time.time() - started, 2),
        **(extra or {}),
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def recall_loop(positives: list[Seed], negatives: list[Seed], pool: list[Seed], output: str | Path,
                rounds: int = 3, accept: float = 0.9, max_new: int | None = None,
                params: TrainParams | None = None, pool_labels: dict[str, bool] | None = None,
                name: str = "classifier") -> dict:
    """DeepSeekMath's loop: each round trains on the seeds, scores the pool, and adds the pool
    documents scoring at least `accept` (at most `max_new`, best first) to the positive seeds.
    The held-out split of the original seeds is fixed, so rounds are comparable; where the pool's
    true labels are known (`pool_labels`: uri -> is positive) each round also reports the pool's
    precision and recall at `accept`. Round k's model is in `round-k/`, the final one at the top."""
    params = params or TrainParams()
    output = Path(output)
    seeds = list(positives)
    taken: set[str] = set()
    history = []
    pool_texts = [s.text for s in pool]
    for k in range(rounds + 1):
        manifest = train(seeds, negatives, output / f"round-{k}", params, name=f"{name}-round-{k}")
        model = Classifier.load(output / f"round-{k}")
        scores = model.score(pool_texts)
        record = {"round": k, "positive_seeds": len(seeds), "held_out": manifest["held_out"],
                  "pool": len(pool), "pool_accepted": int((scores >= accept).sum())}
        if pool_labels:
            labelled = [(s, pool_labels[p.uri]) for s, p in zip(scores, pool) if p.uri in pool_labels]
            if labelled:
                m = Metrics.of(np.array([s for s, _ in labelled]), np.array([y for _, y in labelled]), accept)
                record["pool_labelled"] = asdict(m)
        new = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= accept and pool[i].uri not in taken]
        if max_new is not None:
            new = new[:max_new]
        record["added"] = len(new) if k < rounds else 0
        history.append(record)
        if k == rounds:
            break
        for i in new:
            taken.add(pool[i].uri)
            seeds.append(Seed(pool[i].text, pool[i].uri, "recalled"))
    final = model_file(output / f"round-{rounds}")
    for stale in ("model.ftz", "model.bin"):
        (output / stale).unlink(missing_ok=True)
    shutil.copyfile(final, output / final.name)
    manifest = json.loads((final.parent / "manifest.json").read_text())
    manifest.update({"name": name, "recall_loop": {"rounds": rounds, "accept": accept, "max_new": max_new,
                                                   "history": history}})
    (output / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
