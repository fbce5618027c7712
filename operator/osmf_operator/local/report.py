"""The local run's report.html: per stage its outcome, metrics, training curves, grouping quality, the
campaign's lift chart, and links to every artifact directory and the campaign gallery (pure: data in,
HTML out). Self-contained: inline SVG, no scripts, fonts or remote resources (machines are offline).

What it draws comes from what the stages write (docs/contracts.md): each stage's metrics (the
manifest's, in status), the training loss the local runtime saw in the running step's progress.json
(sampled as the job reports it, every few seconds), Group-DPO's eval/rounds.json, and the truth
evaluation's campaign-lift.json and grouping.json when `osmf demo` wrote them. Everything read from a
file is read defensively: a missing or differently shaped file drops its chart, never the report.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

Point = tuple[float, float]

# Lift chart: the truth evaluation's methods, in the order a reader compares them.
LIFT_METHODS = ("campaign", "generated_only", "retrieval", "logged_oracle", "style_oracle")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass
class StageReport:
    """One resource as the report shows it."""

    kind: str
    name: str
    stage: str
    conditions: list[dict[str, str]]  # type, status, reason, message
    metrics: dict[str, float]
    artifact_href: str | None = None  # relative to report.html
    artifact_uri: str | None = None
    gallery_href: str | None = None
    curves: dict[str, list[Point]] = field(default_factory=dict)  # step → (step number, loss)
    rounds: list[dict[str, Any]] = field(default_factory=list)  # GroupDPORun eval/rounds.json

    @property
    def failed(self) -> bool:
        status = {c["type"]: c["status"] for c in self.conditions}
        return status.get("Stalled") == "True" or status.get("Succeeded") == "False"


# ---- numbers and charts ------------------------------------------------------------------------------


def number(value: Any) -> float | None:
    """A finite float, or None (bools, strings, NaN and missing values are not plotted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e9:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _scale(lo: float, hi: float, out_lo: float, out_hi: float):
    span = (hi - lo) or 1.0
    return lambda v: out_lo + (v - lo) / span * (out_hi - out_lo)


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    if hi == lo:
        return [lo]
    return [lo + (hi - lo) * i / count for i in range(count + 1)]


def line_chart(title: str, series: dict[str, list[Point]], x_label: str, y_label: str,
               width: int = 560, height: int = 240) -> str:
    """An SVG line chart (one line per series, points marked); empty string when nothing to plot."""
    series = {k: sorted(p for p in v if number(p[0]) is not None and number(p[1]) is not None) for k, v in series.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    left, right, top, bottom = 56, width - 12, 28, height - 40
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.08 or abs(y_hi) * 0.1 or 1.0
    y_lo, y_hi = (max(0.0, y_lo - pad) if y_lo >= 0 else y_lo - pad), y_hi + pad  # a loss axis stays ≥ 0
    sx, sy = _scale(min(xs), max(xs), left, right), _scale(y_lo, y_hi, bottom, top)
    parts = [f'<svg class="chart" role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="16" class="title">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/>']
    for tick in _ticks(y_lo, y_hi):
        y = sy(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" class="tick" text-anchor="end">{tick:.3g}</text>')
    for tick in _ticks(min(xs), max(xs)):
        parts.append(f'<text x="{sx(tick):.1f}" y="{bottom + 14}" class="tick" text-anchor="middle">{tick:.4g}</text>')
    parts.append(f'<text x="{(left + right) / 2}" y="{height - 6}" class="label" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{(top + bottom) / 2}" class="label" text-anchor="middle" '
                 f'transform="rotate(-90 12 {(top + bottom) / 2})">{html.escape(y_label)}</text>')
    for index, (name, points) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        parts.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{path}">'
                     f'<title>{html.escape(name)}</title></polyline>')
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"><title>{html.escape(name)}: '
                  f'{fmt(x)} → {y:.4g}</title></circle>' for x, y in points]
        if len(series) > 1:
            parts.append(f'<rect x="{right - 150}" y="{top + 4 + 14 * index}" width="10" height="10" fill="{colour}"/>'
                         f'<text x="{right - 136}" y="{top + 13 + 14 * index}" class="tick">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, bars: list[tuple[str, float, tuple[float, float] | None]], value_label: str,
              width: int = 560, percent: bool = False) -> str:
    """Horizontal bars with optional interval whiskers (e.g. a 95% CI); a zero line when values cross it."""
    bars = [(label, v, ci) for label, v, ci in bars if number(v) is not None]
    if not bars:
        return ""
    row, top, left, right = 26, 30, 150, width - 70
    height = top + row * len(bars) + 34
    values = [v for _, v, _ in bars] + [x for _, _, ci in bars if ci for x in ci] + [0.0]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 or 1.0
    sx = _scale(lo - (pad if lo < 0 else 0), hi + pad, left, right)
    show = (lambda v: f"{v * 100:+.1f}%") if percent else (lambda v: f"{v:.4g}")
    parts = [f'<svg class="chart" role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="12" y="16" class="title">{html.escape(title)}</text>']
    zero = sx(0.0)
    for index, (label, value, ci) in enumerate(bars):
        y = top + row * index
        x0, x1 = sorted((zero, sx(value)))
        colour = PALETTE[index % len(PALETTE)]
        detail = f"{label}: {show(value)}" + (f" (95% CI {show(ci[0])} to {show(ci[1])})" if ci else "")
        parts.append(f'<text x="{left - 6}" y="{y + 15}" class="tick" text-anchor="end">{html.escape(label)}</text>'
                     f'<rect class="bar" x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1):.1f}" height="16" fill="{colour}">'
                     f'<title>{html.escape(detail)}</title></rect>')
        if ci:
            a, b = sx(ci[0]), sx(ci[1])
            parts.append(f'<line class="ci" x1="{a:.1f}" y1="{y + 12}" x2="{b:.1f}" y2="{y + 12}"/>'
                         f'<line class="ci" x1="{a:.1f}" y1="{y + 6}" x2="{a:.1f}" y2="{y + 18}"/>'
                         f'<line class="ci" x1="{b:.1f}" y1="{y + 6}" x2="{b:.1f}" y2="{y + 18}"/>')
        parts.append(f'<text x="{max(x1, (sx(ci[1]) if ci else x1)) + 4:.1f}" y="{y + 15}" class="tick">{html.escape(show(value))}</text>')
    parts.append(f'<line x1="{zero:.1f}" y1="{top}" x2="{zero:.1f}" y2="{top + row * len(bars)}" class="axis"/>'
                 f'<text x="{(left + right) / 2}" y="{height - 8}" class="label" text-anchor="middle">{html.escape(value_label)}</text>'
                 "</svg>")
    return "".join(parts)


# ---- what each kind shows --------------------------------------------------------------------------


def lift_bars(lift: dict[str, Any]) -> list[tuple[str, float, tuple[float, float] | None]]:
    """campaign-lift.json's `lift_vs_onesize` ({method: {value, ci95: [lo, hi]}}), read defensively."""
    table = lift.get("lift_vs_onesize") if isinstance(lift, dict) else None
    if not isinstance(table, dict):
        return []
    bars = []
    for method in [m for m in LIFT_METHODS if m in table] + sorted(m for m in table if m not in LIFT_METHODS):
        entry = table[method]
        value = number(entry.get("value")) if isinstance(entry, dict) else number(entry)
        ci = entry.get("ci95") if isinstance(entry, dict) else None
        interval = (number(ci[0]), number(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
        if value is not None:
            bars.append((method.replace("_", " "), value, interval if interval and None not in interval else None))
    return bars


def ctr_bars(lift: dict[str, Any]) -> list[tuple[str, float, None]]:
    ctr = lift.get("ctr") if isinstance(lift, dict) else None
    if not isinstance(ctr, dict):
        return []
    return [(method.replace("_", " "), value, None) for method, value in ctr.items() if number(value) is not None]


def stage_charts(stage: StageReport) -> list[str]:
    charts = []
    for step, points in stage.curves.items():
        charts.append(line_chart(f"{step}: training loss", {"loss": points}, "optimizer step",
                                 "loss (EMA, as the job reported it)"))
    if stage.rounds:
        rounds = [r for r in stage.rounds if isinstance(r, dict) and number(r.get("round")) is not None]
        series = lambda key: [(r["round"], r[key]) for r in rounds if number(r.get(key)) is not None]  # noqa: E731
        charts.append(line_chart("Group-DPO: DPO loss per round", {"first step": series("dpo_loss_first"),
                                                                  "last step": series("dpo_loss_last")}, "round", "DPO loss"))
        charts.append(line_chart("Group-DPO: GRM reward margin of the pairs per round", {"reward margin": series("reward_margin")},
                                 "round", "chosen − rejected GRM score"))
        charts.append(line_chart("Group-DPO: mean GRM score of the samples per round", {"GRM mean score": series("grm_mean_score")},
                                 "round", "GRM score"))
    eval_losses = [(k.removeprefix("eval_loss_"), v, None) for k, v in stage.metrics.items() if k.startswith("eval_loss_")]
    if eval_losses:
        charts.append(bar_chart("Held-out loss per task", eval_losses, "loss"))
    return [c for c in charts if c]


GROUPING_QUALITY = ("auroc", "mean_silhouette", "groups", "mean_groups_per_product", "min_group_size", "privacy_merges",
                    "ndcg_at_5_between_groups")


# ---- the page ----------------------------------------------------------------------------------------

STYLE = """
body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}
h1{margin-bottom:0.2em} .sub{color:#666;margin-top:0}
section.stage{border:1px solid #ddd;border-radius:6px;padding:0.8em 1.2em;margin:1em 0}
section.failed{border-color:#d62728;background:#fff6f6}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:0.85em;background:#eee}
.badge.ok{background:#d9f2d9} .badge.bad{background:#f8d0d0}
.message{background:#fde8e8;border-left:4px solid #d62728;padding:0.5em 0.8em;white-space:pre-wrap}
table{border-collapse:collapse;margin:0.5em 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:1em}
svg.chart{background:#fafafa;border:1px solid #eee}
svg .title{font-size:13px;font-weight:bold} svg .tick{font-size:10px;fill:#444} svg .label{font-size:11px;fill:#444}
svg .axis{stroke:#333} svg .grid{stroke:#e4e4e4} svg .ci{stroke:#222;stroke-width:1.5}
nav a{margin-right:1em}
"""


def condition_rows(conditions: list[dict[str, str]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(c['type'])}</td><td>{html.escape(c['status'])}</td><td>{html.escape(c.get('reason', ''))}</td>"
                   f"<td>{html.escape(c.get('message', ''))}</td></tr>" for c in conditions)
    return f"<table><tr><th>Condition</th><th>Status</th><th>Reason</th><th>Message</th></tr>{rows}</table>"


def metric_table(metrics: dict[str, float], keys: tuple[str, ...] | None = None) -> str:
    items = [(k, metrics[k]) for k in keys if k in metrics] if keys else sorted(metrics.items())
    items = [(k, v) for k, v in items if number(v) is not None]
    if not items:
        return ""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td class=num>{html.escape(fmt(v))}</td></tr>" for k, v in items)
    return f"<table><tr><th>Metric</th><th>Value</th></tr>{rows}</table>"


def stage_section(stage: StageReport, anchor: str) -> str:
    label = f"{stage.kind}/{stage.name}"
    badge = "bad" if stage.failed else "ok" if stage.stage == "Succeeded" else ""
    out = [f'<section class="stage{" failed" if stage.failed else ""}" id="{anchor}">',
           f'<h2>{html.escape(label)} <span class="badge {badge}">{html.escape(stage.stage)}</span></h2>']
    problems = [c for c in stage.conditions if c.get("message") and (
        (c["type"] == "Stalled" and c["status"] == "True") or (c["type"] == "Succeeded" and c["status"] == "False"))]
    for c in problems[:1]:
        out.append(f'<p class="message"><b>{html.escape(c.get("reason", ""))}</b>: {html.escape(c["message"])}</p>')
    links = []
    if stage.artifact_href:
        links.append(f'<a href="{html.escape(stage.artifact_href)}">artifact directory</a> '
                     f'<code>{html.escape(stage.artifact_uri or "")}</code>')
    if stage.gallery_href:
        links.append(f'<a href="{html.escape(stage.gallery_href)}">campaign gallery</a>')
    if links:
        out.append("<p>" + " · ".join(links) + "</p>")
    if stage.kind == "AudienceGrouping" and any(k in stage.metrics for k in GROUPING_QUALITY):
        out.append("<h3>Grouping quality</h3>" + metric_table(stage.metrics, GROUPING_QUALITY))
    charts = stage_charts(stage)
    if charts:
        out.append('<div class="charts">' + "".join(charts) + "</div>")
    elif stage.kind in ("GMLLMTraining", "GroupDPORun") and stage.stage == "Succeeded":
        out.append("<p><i>No training curve: these outputs came from an earlier run (cache hit), nothing trained here.</i></p>")
    metrics = metric_table(stage.metrics)
    if metrics:
        out.append(f"<details><summary>All metrics ({len(stage.metrics)})</summary>{metrics}</details>")
    out.append(f"<details{' open' if stage.failed else ''}><summary>Conditions</summary>{condition_rows(stage.conditions)}</details>")
    out.append("</section>")
    return "".join(out)


def evaluation_section(lift: dict[str, Any] | None, grouping: dict[str, Any] | None, lift_href: str | None) -> str:
    if not lift and not grouping:
        return ""
    out = ['<section class="stage" id="evaluation"><h2>Evaluation against the synthetic world\'s truth</h2>']
    if lift:
        bars = lift_bars(lift)
        chart = bar_chart("Expected CTR lift over one-size, 95% CI", bars,
                          "held-out products; lift vs each product's best single logged creative", percent=True) if bars else ""
        if not chart:
            chart = bar_chart("Expected CTR per method (held-out products)", ctr_bars(lift), "CTR under the true click model")
        if chart:
            out.append('<div class="charts">' + chart + "</div>")
        numbers = {k: v for k, v in lift.items() if number(v) is not None}
        if numbers:
            out.append(metric_table(numbers))
        if lift_href:
            out.append(f'<p><a href="{html.escape(lift_href)}">campaign-lift.json</a></p>')
    if grouping:
        flat = {k: v for k, v in grouping.items() if number(v) is not None}
        if flat:
            out.append("<h3>Groups vs true segments</h3>" + metric_table(flat))
    out.append("</section>")
    return "".join(out)


def render_report(title: str, root_uri: str, stages: list[StageReport], lift: dict[str, Any] | None = None,
                  grouping: dict[str, Any] | None = None, lift_href: str | None = None) -> str:
    anchors = [f"s{index}" for index in range(len(stages))]
    succeeded = sum(1 for s in stages if s.stage == "Succeeded")
    failed = [s for s in stages if s.failed]
    nav = "".join(f'<a href="#{a}">{html.escape(s.kind)}/{html.escape(s.name)}</a>' for a, s in zip(anchors, stages))
    gallery = next((s.gallery_href for s in stages if s.gallery_href), None)
    head = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>")
    summary = f"{succeeded} of {len(stages)} stages succeeded" + (f"; {len(failed)} failed" if failed else "")
    top = [f"<h1>{html.escape(title)}</h1>", f'<p class="sub">{html.escape(summary)} — artifacts in <code>{html.escape(root_uri)}</code></p>',
           f"<nav>{nav}" + (f'<a href="{html.escape(gallery)}"><b>campaign gallery</b></a>' if gallery else "")
           + ('<a href="#evaluation">evaluation</a>' if lift or grouping else "") + "</nav>"]
    body = [stage_section(s, a) for s, a in zip(stages, anchors)] + [evaluation_section(lift, grouping, lift_href)]
    return head + "".join(top) + "".join(body) + "</body></html>"
