"""A self-contained HTML report of a curate output: inline SVG plots (matplotlib), no network
needed to view it. Each plot is a `<figure data-plot>`; a small script marks on the page how many
drew, so a headless browser can check the report as a person would see it."""

from __future__ import annotations

import html
import io
import json
import time

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
ROUNDS_PER_ROW = 3


def reason_colours(reasons: list[str]) -> dict[str, str]:
    """A colour each for up to 40 reasons (matplotlib's tab20 and tab20b, dark and light alternating),
    so that the reasons of one stage, which stand side by side, are told apart."""
    from matplotlib import colormaps

    colours = [colormaps[name](i) for name in ("tab20", "tab20b") for i in range(20)]
    colours = colours[0::2] + colours[1::2]  # the dark tones first: 20 clearly different colours
    return {r: colours[i % len(colours)] for i, r in enumerate(reasons)}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.6em; margin-bottom: .2em; }} h2 {{ margin-top: 1.8em; border-bottom: 1px solid #ddd; }}
.meta {{ color: #666; }} table {{ border-collapse: collapse; margin: .6em 0; }}
td, th {{ padding: .2em .7em; border-bottom: 1px solid #eee; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.ok {{ color: #2a7d2a; font-weight: 600; }} .bad {{ color: #b22; font-weight: 600; }}
figure {{ margin: 1em 0; }} figcaption {{ color: #555; font-size: .92em; }}
figure svg {{ max-width: 100%; height: auto; }} li code {{ overflow-wrap: anywhere; }}
.audit td:last-child, .audit th:last-child {{ text-align: left; }}
.grid {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }}
</style></head><body>
<h1>{title}</h1>
<p class="meta">{meta}</p>
{body}
<script>
(function () {{
  var figures = document.querySelectorAll("figure[data-plot]"), drawn = 0;
  figures.forEach(function (f) {{
    var svg = f.querySelector("svg");
    if (svg && svg.getBBox().width > 0 && svg.getBBox().height > 0) {{ drawn++; f.dataset.drawn = "yes"; }}
  }});
  document.body.dataset.plotsExpected = figures.length;
  document.body.dataset.plotsDrawn = drawn;
  document.body.dataset.pageWidth = document.documentElement.scrollWidth;
}})();
</script>
</body></html>
"""


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(name: str, caption: str, fig) -> str:
    return (f'<figure data-plot="{html.escape(name)}">{_svg(fig)}'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(labels, values, xlabel: str, title: str, log: bool = False):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 0.35 * len(labels) + 1.2))
    bars = ax.barh([str(x) for x in labels][::-1], list(values)[::-1], color=PALETTE[0])
    ax.bar_label(bars, labels=[f"{v:,}" for v in list(values)[::-1]], padding=3, fontsize=8)
    ax.margins(x=.12)  # room for the labels
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=11)
    positive = [v for v in values if v > 0]
    if log and positive and max(positive) >= 100 * min(positive):  # a log axis only where it is needed
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.grid(axis="x", alpha=.3)
    return fig


def by_group_plots(stats: dict) -> list[str]:
    out = []
    for key, what in (("by_source", "source"), ("by_kind", "kind")):
        groups = stats[key]
        if not groups:
            continue
        names = list(groups)
        out.append(_figure(f"documents-by-{what}", f"Documents by {what}.",
                           _bars(names, [groups[n]["documents"] for n in names], "documents", f"documents by {what}")))
        unit = "tokens" if stats.get("tokens") is not None else "words"
        out.append(_figure(f"{unit}-by-{what}", f"{unit.capitalize()} by {what}.",
                           _bars(names, [groups[n][unit] for n in names], unit, f"{unit} by {what}")))
    return out


def length_plot(stats: dict) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.6))
    for i, (kind, hist) in enumerate(stats["length_histogram_by_kind"].items()):
        if not hist:
            continue
        # the histogram lists the bins that hold documents; the ones between hold none and are drawn as none
        counts = {max(1, h["min_chars"]): h["documents"] for h in hist}
        low, high = min(counts).bit_length() - 1, max(counts).bit_length() - 1
        edges = [2 ** k for k in range(low, high + 2)]
        ax.stairs([counts.get(e, 0) for e in edges[:-1]], edges, label=str(kind), color=PALETTE[i % len(PALETTE)],
                  linewidth=1.5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)  # an empty bin falls to the axis
    ax.set_xlabel("characters (log2 bins)")
    ax.set_ylabel("documents")
    ax.set_title("length distribution by kind", fontsize=11)
    ax.legend(fontsize=8)
    ax.grid(alpha=.3)
    return _figure("length-distribution", "Document length by kind (powers of two of characters).", fig)


def waterfall_plot(stats: dict) -> str:
    """Input; for each stage what remains (grey) and what it dropped (stacked by reason); kept."""
    import matplotlib.pyplot as plt

    stages = stats["stages"]
    fig, ax = plt.subplots(figsize=(10, 0.5 * (len(stages) + 2) + 1.2))
    reasons = list(dict.fromkeys(r for s in stages for r, _ in sorted(s["dropped"].items(), key=lambda kv: -kv[1])))
    colour = reason_colours(reasons)
    labels, level = ["input"], stats["balance"]["input"]
    ax.barh(0, level, color="#bbb")
    seen = set()
    for i, s in enumerate(stages, start=1):
        labels.append(s["name"])
        dropped = sum(s["dropped"].values())
        ax.barh(i, level - dropped, color="#e4e4e4")
        left = level - dropped
        for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1]):
            ax.barh(i, n, left=left, color=colour[reason], label=None if reason in seen else reason)
            left += n
            seen.add(reason)
        if dropped:
            ax.annotate(f"-{dropped:,}", (level, i), xytext=(4, 0), textcoords="offset points", va="center",
                        fontsize=8)
        level -= dropped
    labels.append("kept")
    ax.barh(len(labels) - 1, stats["balance"]["kept"], color=PALETTE[2])
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("documents")
    ax.set_title("drop waterfall: what each stage removed, by reason", fontsize=11)
    if reasons:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=1 + len(reasons) // 30)
    ax.grid(axis="x", alpha=.3)
    return _figure("drop-waterfall", "Documents in; what each stage dropped (colour: reason) and what it passed on "
                   "(grey); documents kept.", fig)


def score_plots(stats: dict) -> list[str]:
    """One plot for every declared score column, with a dashed line at each of its thresholds."""
    import matplotlib.pyplot as plt

    out = []
    for name, s in stats["scores"].items():
        fig, ax = plt.subplots(figsize=(5.2, 2.8))
        ax.stairs(s["counts"], s["edges"], fill=True, color=PALETTE[0])
        if s.get("scale") == "log2":
            ax.set_xscale("symlog", linthresh=1)
        top = max(s["counts"], default=0) or 1
        for t in s["thresholds"]:
            ax.axvline(t["value"], color=PALETTE[3], linestyle="--")
            ax.annotate(f"{t['op']} {t['value']:g}", (t["value"], top * .9), color=PALETTE[3], fontsize=8, ha="left")
        ax.set_title(name, fontsize=11)
        ax.set_xlabel(f"{_unit(name)} (log scale)" if s.get("scale") == "log2" else "score")
        ax.set_ylabel("documents")
        out.append(_figure(f"score-{name}", f"Distribution of {name}" +
                           (" with its thresholds (dashed)." if s["thresholds"] else "."), fig))
    return out


def _unit(column: str) -> str:
    """What a counted score column counts: `stats.chars` counts characters, `...words` words."""
    last = column.rsplit(".", 1)[-1]
    return {"chars": "characters", "words": "words", "lines": "lines", "tokens": "tokens"}.get(last, "count")


def cluster_plots(stats: dict) -> list[str]:
    return [_figure(f"clusters-{reason}", f"Clusters of {reason} by size (the keeper and its duplicates).",
                    _bars([c["size"] for c in clusters], [c["clusters"] for c in clusters], "clusters",
                          f"{reason} cluster sizes", log=True))
            for reason, clusters in stats["duplicate_clusters"].items() if clusters]


def tally_plots(stats: dict) -> list[str]:
    """Each stage's totals over the kept documents, the ones that occurred (the rest are named)."""
    out = []
    for stage, t in stats["tallies"].items():
        found = {k: v for k, v in t.items() if k != "total" and v}
        if not found:
            continue
        absent = sorted(k for k, v in t.items() if k != "total" and not v)
        caption = (f"{stage}: totals over the kept documents" + (f" ({t['total']:,} in all)" if "total" in t else "")
                   + (f"; none of {', '.join(absent)}." if absent else "."))
        out.append(_figure(f"tallies-{stage}", caption, _bars(list(found), list(found.values()), "count", stage)))
    return out


def rounds_plot(rounds: list[dict]) -> str | None:
    """Scores by round of a loop (each dict: round, then numeric metrics, the headline first): a grid
    of small plots, rows of ROUNDS_PER_ROW; a metric with one value in every round is named, not drawn."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not rounds:
        return None
    metrics = list(dict.fromkeys(k for r in rounds for k, v in r.items() if k != "round" and isinstance(v, (int, float))))
    flat = [m for m in metrics if len({r[m] for r in rounds if m in r}) == 1 and len(rounds) > 1]
    drawn = [m for m in metrics if m not in flat]
    if not drawn:
        return None
    rows = -(-len(drawn) // ROUNDS_PER_ROW)
    fig, axes = plt.subplots(rows, ROUNDS_PER_ROW, figsize=(3.4 * ROUNDS_PER_ROW, 2.6 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, drawn):
        xs = [r["round"] for r in rounds if metric in r]
        ax.plot(xs, [r[metric] for r in rounds if metric in r], marker="o", color=PALETTE[0])
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=.3)
    for ax in axes.flat[len(drawn):]:
        ax.set_visible(False)
    fig.tight_layout()
    same = "; the same in every round: " + ", ".join(f"{m} {rounds[0][m]:g}" for m in flat) if flat else ""
    first = ", the eval suite's bits per byte first" if drawn[0] == "suite_bpb" else ""
    return _figure("rounds", f"Scores by round{first}{same}.", fig)


def audit_table(audit: dict) -> str:
    """Kept documents per audit check and kind, and each check's samples."""
    kinds = sorted({k for c in audit["checks"].values() for k in c["by_kind"]})
    rows = []
    for name, c in audit["checks"].items():
        total = f'<span class="{"bad" if c["documents"] else "ok"}">{c["documents"]:,}</span>'
        rows.append([html.escape(name), *(f"{c['by_kind'].get(k, 0):,}" for k in kinds), total, html.escape(c["what"])])
    samples = [f"<li><code>{html.escape(name)}</code> {html.escape(s['uri'])} ({html.escape(s['kind'])}): "
               f"<code>{html.escape(s['excerpt'])}</code></li>"
               for name, c in audit["checks"].items() for s in c["samples"]]
    return (_table(["check", *map(html.escape, kinds), "documents", "what"], rows).replace("<table>", '<table class="audit">', 1)
            + (f"<ul>{''.join(samples)}</ul>" if samples else ""))


def render_html(stats: dict, rounds: list[dict] | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    b = stats["balance"]
    mark = '<span class="ok">balanced</span>' if b["balanced"] else '<span class="bad">NOT balanced</span>'
    summary = _table(["", ""], [
        ["documents kept", f"{stats['documents']:,}"], ["text", f"{stats['text_bytes'] / 1e6:,.1f} MB"],
        ["words", f"{stats['words']:,}"],
        *([["tokens", f"{stats['tokens']:,}"]] if stats.get("tokens") is not None else []),
        ["shards", f"{len(stats['shards']):,}"],
        ["ledger", f"input {b['input']:,} = kept {b['kept']:,} + dropped {b['dropped']:,} &nbsp; {mark}"],
    ])
    drops = _table(["reason", "documents"], [[html.escape(r), f"{n:,}"] for r, n in stats["dropped_by_reason"].items()])
    rounds_part = rounds_plot(rounds or [])  # a loop's report: its scores by round come first
    sections = [("Summary", summary), *([("Rounds", rounds_part)] if rounds_part else []),
                ("Documents and words by source and kind", '<div class="grid">' + "".join(by_group_plots(stats)) + "</div>"),
                ("Lengths", length_plot(stats)),
                ("Drops", waterfall_plot(stats) + drops)]
    scores = score_plots(stats)
    if scores:
        sections.append(("Scores", '<div class="grid">' + "".join(scores) + "</div>"))
    for title, parts in (("Duplicate clusters", cluster_plots(stats)), ("Totals", tally_plots(stats))):
        if parts:
            sections.append((title, "".join(parts)))
    if stats.get("audit"):
        sections.append(("Audit: what training text should not hold", audit_table(stats["audit"])))
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{content}" for t, content in sections)
    meta = (f"{html.escape(stats['output'])} · job {html.escape(str(stats.get('name')))} · config "
            f"{html.escape(str(stats.get('config_hash')))} · report made {time.strftime('%Y-%m-%d %H:%M')}")
    return PAGE.format(title=f"Sigma curate report: {html.escape(str(stats.get('name')))}", meta=meta, body=body)


def write_html(stats: dict, path, rounds: list[dict] | None = None) -> None:
    from pathlib import Path

    Path(path).write_text(render_html(stats, rounds), encoding="utf-8")


def stats_json(stats: dict) -> str:
    return json.dumps(stats, indent=1)
