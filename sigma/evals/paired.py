"""Paired bootstrap intervals for the difference between two models' suite scores.

Two recipes compared on one suite with a few seeds each: the spread over seeds alone ignores that
both were scored on the same few hundred documents, and a min/max overlap test with three seeds
is blunt. The paired bootstrap (Efron and Tibshirani 1993; for NLP, Koehn 2004 and Dror et al.
2018) resamples what the difference could have been measured on: each draw takes the suite's
documents again with replacement (within each kind, so every kind keeps its size), the
multiple-choice items likewise, and the seeds with replacement, pairs seed ``s`` of one model with
seed ``s`` of the other (the same initialisation), and scores both on that same resample. The 2.5th
and 97.5th percentiles of the differences are the 95% interval; a difference is beyond it when the
interval does not hold 0. An arm against itself gives a difference of 0 in every draw.

Every metric is a ratio of sums over items (``sigma.evals.suite.suite_metrics`` sums them the same
way): bits per byte per kind and over the system kinds, the gold command's bits per byte, multiple
choice accuracy and margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sigma.evals.suite import GENERAL_KINDS


@dataclass
class Ratio:
    """A metric: per seed and item, ``numerator``; per item, ``denominator``; over ``stratum``."""

    numerator: np.ndarray  # (seeds, items)
    denominator: np.ndarray  # (items,)
    stratum: str  # "documents" or "mc"
    items: np.ndarray  # indices into the stratum's items


def metric_ratios(results: list[dict]) -> dict[str, Ratio]:
    """The suite's metrics as ratios over the items of ``results`` (one suite result per seed, all
    on the same items, in the same order)."""
    docs = [r["items"]["documents"] for r in results]
    mcs = [r["items"]["mc"] for r in results]
    ids = [row[0] for row in docs[0]]
    mc_ids = [row[0] for row in mcs[0]]
    if any([row[0] for row in d] != ids for d in docs) or any([row[0] for row in m] != mc_ids for m in mcs):
        raise ValueError("paired results must be scored on the same suite items (same suite and limit)")
    kinds = np.array([row[1] for row in docs[0]])
    nll = np.array([[row[2] for row in d] for d in docs]) / math.log(2)
    nbytes = np.array([row[3] for row in docs[0]], dtype=float)
    out = {}
    system = np.flatnonzero(~np.isin(kinds, GENERAL_KINDS))
    if len(system):
        out["bpb_all"] = Ratio(nll[:, system], nbytes[system], "documents", system)
    for kind in sorted(set(kinds)):
        at = np.flatnonzero(kinds == kind)
        out[f"bpb/{kind}"] = Ratio(nll[:, at], nbytes[at], "documents", at)
    if mc_ids:
        every = np.arange(len(mc_ids))
        ones = np.ones(len(mc_ids))
        out["nl2cmd_bpb"] = Ratio(np.array([[row[3] for row in m] for m in mcs]) / math.log(2),
                                  np.array([row[4] for row in mcs[0]], dtype=float), "mc", every)
        out["mc_accuracy"] = Ratio(np.array([[row[2] for row in m] for m in mcs], dtype=float), ones, "mc", every)
        out["mc_margin"] = Ratio(np.array([[row[1] for row in m] for m in mcs]), ones, "mc", every)
    return out


def _weights(rng: np.random.Generator, strata: list[np.ndarray], size: int, draws: int) -> np.ndarray:
    """(draws, size) multiplicities: each stratum's items drawn again with replacement."""
    weights = np.zeros((draws, size))
    for members in strata:
        weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=draws)
    return weights


def paired_differences(variant: list[dict], baseline: list[dict], draws: int = 2000, seed: int = 0) -> dict[str, dict]:
    """For each metric, ``variant - baseline``: the difference of the means over seeds, and the 95%
    paired bootstrap interval (``ci95``) of it. ``variant[i]`` and ``baseline[i]`` are suite
    results of the same seed."""
    if len(variant) != len(baseline) or not variant:
        raise ValueError(f"pairing needs the same seeds on both sides ({len(variant)} and {len(baseline)})")
    a, b = metric_ratios(variant), metric_ratios(baseline)
    rng = np.random.default_rng(seed)
    docs = variant[0]["items"]["documents"]
    kinds = np.array([row[1] for row in docs])
    strata = {"documents": [np.flatnonzero(kinds == k) for k in sorted(set(kinds))],
              "mc": [np.arange(len(variant[0]["items"]["mc"]))] if variant[0]["items"]["mc"] else []}
    sizes = {"documents": len(docs), "mc": len(variant[0]["items"]["mc"])}
    weights = {name: _weights(rng, strata[name], sizes[name], draws) for name in strata}
    seeds = rng.multinomial(len(variant), np.full(len(variant), 1 / len(variant)), size=draws) / len(variant)
    out = {}
    for key, ra in a.items():
        rb = b.get(key)
        if rb is None:
            continue
        w = weights[ra.stratum][:, ra.items]  # (draws, items)
        den = w @ ra.denominator  # (draws,)
        per_seed = (w @ (ra.numerator - rb.numerator).T) / np.where(den > 0, den, np.nan)[:, None]  # (draws, seeds)
        boot = (per_seed * seeds).sum(axis=1)
        point = float((ra.numerator.sum(1) / ra.denominator.sum()).mean() - (rb.numerator.sum(1) / rb.denominator.sum()).mean())
        lo, hi = np.nanpercentile(boot, [2.5, 97.5])
        out[key] = {"diff": point, "ci95": [float(lo), float(hi)]}
    return out
