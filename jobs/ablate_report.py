"""An ablation's results: per variant and suite metric, the mean and spread over seeds, and the
difference from the baseline with its 95% paired bootstrap interval (``sigma.evals.paired``: the
suite's documents and items and the seeds resampled, seed paired with seed); as a terminal table,
results.json, results.md and report.html (scores by variant with error bars, the loss curve of
every arm).

    sigma ablate report out/ablate-curation/bundle [--results more.jsonl]

A difference is *beyond the interval* (✓ better, ✗ worse) when its interval does not hold 0.
Arms at a learning-rate scale other than 1 get a table of their own.
"""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path

LOWER, HIGHER = "lower", "higher"


def arm_metrics(scores: dict) -> dict[str, float]:
    """The suite result of one arm as flat metrics: bits per byte over the system kinds and per
    kind, the gold command's bits per byte given the request, multiple-choice accuracy and margin."""
    out = {"bpb_all": scores["bpb_all"]}
    out.update({f"bpb/{kind}": value for kind, value in sorted(scores.get("bpb", {}).items())})
    if scores.get("nl2cmd_bpb") is not None:
        out["nl2cmd_bpb"] = scores["nl2cmd_bpb"]
    if scores.get("mc") and scores["mc"].get("accuracy") is not None:
        out["mc_accuracy"] = scores["mc"]["accuracy"]
        if scores["mc"].get("margin") is not None:
            out["mc_margin"] = scores["mc"]["margin"]
    return out


def better(metric: str) -> str:
    return HIGHER if metric.endswith(("accuracy", "margin")) else LOWER


def _stats(values: list[float]) -> dict:
    return {"values": values, "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None, "min": min(values), "max": max(values)}


def _verdict(diff: dict, direction: str) -> str:
    lo, hi = diff["ci95"]
    if lo <= 0 <= hi:
        return "within interval"
    return "better" if (hi < 0) == (direction == LOWER) else "worse"


def _shares(counts: list[dict[str, int]]) -> dict[str, float]:
    """Each kind's share of the total, averaged over the given counts (arms, or one corpus)."""
    counts = [c for c in counts if sum(c.values())]
    kinds = sorted({k for c in counts for k in c})
    return {k: statistics.fmean(c.get(k, 0) / sum(c.values()) for c in counts) for k in kinds} if counts else {}


def summarise(bundle: dict, results: list[dict], lr_scale: float = 1.0, draws: int | None = None) -> dict:
    """The table of the arms at one learning-rate scale (``bundle``: the bundle's bundle.json)."""
    from sigma.evals.paired import paired_differences

    settings = bundle["settings"]
    results = [r for r in results if r.get("lr_scale", 1.0) == lr_scale]
    metrics = list(dict.fromkeys(k for r in results for k in arm_metrics(r["scores"])))
    by_variant = {name: sorted((r for r in results if r["variant"] == name), key=lambda r: r["seed"])
                  for name in settings["variants"]}
    base = by_variant[settings["baseline"]]
    variants = {}
    for name, arms in by_variant.items():
        if not arms:
            continue
        info = bundle["variants"][name]
        per = {k: _stats([arm_metrics(r["scores"])[k] for r in arms if k in arm_metrics(r["scores"])]) for k in metrics}
        if name != settings["baseline"]:
            seeds = sorted({r["seed"] for r in arms} & {r["seed"] for r in base})
            if seeds:
                diffs = paired_differences([r["scores"] for r in arms if r["seed"] in seeds],
                                           [r["scores"] for r in base if r["seed"] in seeds],
                                           draws=draws or settings["score"]["bootstrap"])
                for k, d in diffs.items():
                    if k in per:
                        per[k].update(d, paired_seeds=seeds, verdict=_verdict(d, better(k)))
        variants[name] = {"documents": info["documents"], "corpus_bytes": info["bytes"],
                          "sample_tokens": info["sample_tokens"],
                          "epochs": statistics.fmean(r["epochs"] for r in arms), "arms": [r["arm"] for r in arms],
                          "metrics": per, "corpus_share": _shares([info.get("bytes_by_group", {})]),
                          "read_share": _shares([r.get("trained_tokens_by_kind", {}) for r in arms])}
    suite = results[0]["scoring"]["suite"] if results else bundle["suite"]
    budget = results[0]["budget"] if results else settings["budget"]
    return {"name": settings["name"], "baseline": settings["baseline"], "budget": budget, "seeds": settings["seeds"],
            "lr_scale": lr_scale, "suite": suite, "smoke": any(r.get("smoke") for r in results),
            "weights": results[0].get("weights") if results else None,
            "metrics": [{"key": k, "better": better(k)} for k in metrics], "variants": variants,
            "arms": sorted(results, key=lambda r: r["arm"])}


def collect_results(out: Path, smoke: bool = False, extra: list[Path] = ()) -> list[dict]:
    """Every arm's result: the arms' scores.json under ``out``, then results files (later wins)."""
    from jobs.ablate_train import RESULTS, read_results

    found = {}
    for path in sorted((out / ("smoke-arms" if smoke else "arms")).glob("*/scores.json")):
        result = json.loads(path.read_text())
        found[result["arm"]] = result
    found.update(read_results(out / (f"smoke-{RESULTS}" if smoke else RESULTS), *extra))
    return [r for r in found.values() if bool(r.get("smoke")) == smoke]


def report(bundle_dir: str | Path, out: str | Path | None = None, smoke: bool = False, extra: list[Path] = ()) -> dict:
    """Write results.json, results.md and report.html for a bundle's arms; return the summaries."""
    from jobs.ablate_bundle import verify_bundle

    bundle_dir = Path(bundle_dir)
    out = Path(out) if out else bundle_dir.parent
    bundle = verify_bundle(bundle_dir)
    results = [r for r in collect_results(out, smoke, extra) if r["scoring"]["suite"] == bundle["suite"]]
    if not results:
        raise FileNotFoundError(f"no arm results for {bundle_dir} under {out}: run `sigma ablate train {bundle_dir}` first")
    scales = sorted({r.get("lr_scale", 1.0) for r in results}, key=lambda v: (v != 1.0, -v))
    summaries = [summarise(bundle, results, scale) for scale in scales]
    write_results(out, summaries, prefix="smoke-" if smoke else "")
    return {"tables": summaries}


# -- the table ---------------------------------------------------------------------------------

def _mean_sd(m: dict) -> str:
    return f"{m['mean']:.4f}" + (f" ± {m['sd']:.4f}" if m["sd"] is not None else "")


def _diff(m: dict) -> str:
    if "diff" not in m:
        return "baseline"
    mark = {"better": " ✓", "worse": " ✗", "within interval": ""}[m["verdict"]]
    lo, hi = m["ci95"]
    return f"{m['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark}"


def table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Heading and rows: a variant per row, for each metric its mean ± sd and the difference."""
    keys = [m["key"] for m in summary["metrics"]]
    headings = ["variant", "docs", "sample tokens", "epochs"]
    for m in summary["metrics"]:
        arrow = "↓" if m["better"] == LOWER else "↑"
        headings += [f"{m['key']} {arrow}", f"Δ {m['key']}"]
    rows = []
    for name, v in summary["variants"].items():
        row = [name, f"{v['documents']:,}", f"{v['sample_tokens']:,}", f"{v['epochs']:.2f}"]
        for k in keys:
            m = v["metrics"][k]
            row += [_mean_sd(m), _diff(m)]
        rows.append(row)
    return headings, rows


def caption(summary: dict) -> str:
    suite = summary["suite"] or {}
    lr = "" if summary["lr_scale"] == 1 else f", learning rate x{summary['lr_scale']:g}"
    smoke = " [SMOKE: a few steps, not a result]" if summary.get("smoke") else ""
    return (f"{summary['name']}{smoke}: {summary['budget']:,} tokens an arm{lr}, seeds {summary['seeds']}, suite "
            f"{suite.get('name')} ({str(suite.get('hash'))[:12]}), {summary.get('weights') or 'last'} weights; mean ± sd "
            f"over seeds; Δ from {summary['baseline']} [95% paired bootstrap interval over suite items and seeds], "
            "✓/✗ beyond it")


def mix_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Per variant, source and kind: its share of the corpus's bytes, and of the tokens the arms read."""
    kinds = sorted({k for v in summary["variants"].values() for k in (*v.get("corpus_share", {}), *v.get("read_share", {}))})
    rows = [[name] + [f"{100 * v.get('corpus_share', {}).get(k, 0):.1f}% / {100 * v.get('read_share', {}).get(k, 0):.1f}%"
                      for k in kinds] for name, v in summary["variants"].items()]
    return ["variant"] + kinds, rows


def _markdown(headings: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headings) + " |", "|---|" + "---:|" * (len(headings) - 1)] + \
        ["| " + " | ".join(row) + " |" for row in rows]


def table_markdown(summary: dict) -> str:
    lines = [caption(summary), "", *_markdown(*table_rows(summary))]
    headings, rows = mix_rows(summary)
    if len(headings) > 1:
        lines += ["", "Each source and kind's share of the variant's bytes / of the tokens its arms read (mean over seeds):", "",
                  *_markdown(headings, rows)]
    return "\n".join(lines) + "\n"


def render_table(summary: dict, console) -> None:
    from rich.table import Table

    headings, rows = table_rows(summary)
    table = Table(title=caption(summary), title_justify="left")
    for i, h in enumerate(headings):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# -- files -------------------------------------------------------------------------------------

def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_results(root: Path, summaries: list[dict], prefix: str = "") -> None:
    root.mkdir(parents=True, exist_ok=True)
    _write(root / f"{prefix}results.json", json.dumps({"tables": summaries}, indent=1) + "\n")
    _write(root / f"{prefix}results.md", "\n".join(table_markdown(s) for s in summaries))
    _write(root / f"{prefix}report.html", render_html(root, summaries))


def scores_plot(summary: dict):
    import matplotlib.pyplot as plt

    from pipeline.report import PALETTE

    metrics = [m["key"] for m in summary["metrics"]]
    names = list(summary["variants"])
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols + 0.6, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, metrics):
        for i, name in enumerate(names):
            m = summary["variants"][name]["metrics"][key]
            colour = PALETTE[i % len(PALETTE)]
            ax.bar(i, m["mean"], color=colour, alpha=.55, yerr=m["sd"] or 0, capsize=4)
            ax.plot([i] * len(m["values"]), m["values"], "o", color=colour, markersize=4)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        values = [x for n in names for x in summary["variants"][n]["metrics"][key]["values"]]
        span = (max(values) - min(values)) or abs(max(values)) * 0.05 or 1.0
        ax.set_ylim(min(values) - span, max(values) + span)  # bars from zero would hide the differences
        ax.set_title(f"{key} ({better(key)} is better)", fontsize=9)
        ax.grid(axis="y", alpha=.3)
    return fig


def loss_plot(summary: dict):
    import matplotlib.pyplot as plt

    from pipeline.report import PALETTE

    fig, ax = plt.subplots(figsize=(9, 3.6))
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(summary["variants"])}
    styles = ["-", "--", ":", "-."]
    for arm in summary["arms"]:
        curve = arm.get("loss_curve")
        if curve:
            style = styles[summary["seeds"].index(arm["seed"]) % len(styles)] if arm["seed"] in summary["seeds"] else "-"
            ax.plot(*zip(*curve), style, color=colours[arm["variant"]], label=arm["arm"], linewidth=1.2)
    ax.set_xlabel("tokens trained")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("training loss of every arm (each on its own variant's data)", fontsize=11)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=.3)
    return fig


def render_html(root: Path, summaries: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from pipeline.report import PAGE, _figure, _table

    sections = []
    for summary in summaries:
        tag = "" if summary["lr_scale"] == 1 else f" (learning rate x{summary['lr_scale']:g})"
        slug = "" if summary["lr_scale"] == 1 else f"-lr{summary['lr_scale']:g}"
        headings, rows = table_rows(summary)
        arms = _table(["arm", "tokens", "steps", "epochs", "final loss", *[m["key"] for m in summary["metrics"]]],
                      [[html.escape(a["arm"]), f"{a['tokens']:,}", f"{a['steps']:,}", f"{a['epochs']:.2f}",
                        f"{a['final_loss']:.4f}" if a["final_loss"] is not None else "-",
                        *[f"{v:.4f}" for v in arm_metrics(a["scores"]).values()]] for a in summary["arms"]])
        sections += [
            (f"Variants{tag}", f"<p>{html.escape(caption(summary))}</p>"
             + _table(headings, [[html.escape(c) for c in row] for row in rows])),
            (f"Scores by variant{tag}", _figure(f"scores-by-variant{slug}", "Suite scores by variant: mean over seeds "
                                                "(bar), standard deviation (error bar), each seed (dot).",
                                                scores_plot(summary))),
            (f"Loss curves{tag}", _figure(f"loss-curves{slug}", "Training loss against tokens, every arm; colour: "
                                          "variant, line style: seed. Each arm's loss is on its own variant's data, so "
                                          "only the suite compares them.", loss_plot(summary))),
            (f"Arms{tag}", arms),
        ]
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{content}" for t, content in sections)
    return PAGE.format(title=f"Sigma ablation: {html.escape(summaries[0]['name'])}",
                       meta=html.escape(caption(summaries[0])), body=body)
