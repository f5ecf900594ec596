"""Plotly figure specifications (plain dicts: ``{"data": [...], "layout": {...}}``) for the HTML report.

The figures are data for ``Plotly.newPlot``; plotly.js itself is inlined once per file by
:mod:`onnxgate.judge.html.render`. Building the dicts here keeps ``plotly`` (the Python
package) out of the import path: only its bundled plotly.js is read.
"""

from __future__ import annotations

import math
from typing import Any

from onnxgate.judge.error_summary import ErrorSummary

PASS, FAIL, MUTED, ACCENT, LIMIT = "#2f9e6e", "#d64545", "#8a94a6", "#3b6fd8", "#e08a1e"
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12, "color": "#273142"}


def _layout(**extra: Any) -> dict[str, Any]:
    base = {
        "font": FONT, "margin": {"l": 64, "r": 18, "t": 36, "b": 52}, "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#fbfcfe", "showlegend": True, "bargap": 0.04,
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.12, "font": {"size": 11}},
    }
    base.update(extra)
    return base


def _sci(exponent: float) -> str:
    return f"1e{int(exponent)}"


def _histogram_traces(summary: ErrorSummary) -> list[dict[str, Any]]:
    lo, hi = summary.log10_range or (0.0, 1.0)
    n = len(summary.counts)
    step = (hi - lo) / n if n else 1.0
    centers = [lo + (i + 0.5) * step for i in range(n)]
    edges = summary.edges()
    text = [f"{edges[i]:.3g} – {edges[i + 1]:.3g}" for i in range(n)]
    return [{
        "type": "bar", "x": centers, "y": summary.counts, "width": [step] * n, "name": "elements",
        "marker": {"color": ACCENT, "line": {"width": 0}}, "customdata": text, "xaxis": "x", "yaxis": "y",
        "hovertemplate": "|onnx − ref| %{customdata}<br>%{y} elements<extra></extra>", "showlegend": False,
    }]


def _log_ticks(lo: float, hi: float) -> dict[str, Any]:
    first, last = math.floor(lo), math.ceil(hi)
    every = max(1, (last - first) // 8)
    values = list(range(first, last + 1, every))
    return {"tickvals": values, "ticktext": [_sci(v) for v in values]}


def typical_limit(summary: ErrorSummary) -> float:
    """The element-wise limit at the median |ref| of the sampled points."""
    refs = sorted(x for x, _ in summary.points + summary.beyond)
    median = refs[len(refs) // 2] if refs else 0.0
    return summary.atol + summary.rtol * median


def _limit_line(summary: ErrorSummary, xs: list[float]) -> dict[str, Any] | None:
    positive = [x for x in xs if x > 0]
    if not positive:
        return None
    lo, hi = math.log10(min(positive)), math.log10(max(positive))
    hi = hi if hi > lo else lo + 1
    grid = [10 ** (lo + (hi - lo) * i / 40) for i in range(41)]
    ys = [summary.atol + summary.rtol * x for x in grid]
    if not any(y > 0 for y in ys):
        return None
    return {
        "type": "scatter", "mode": "lines", "x": grid, "y": ys, "name": "limit: atol + rtol·|ref|",
        "line": {"color": LIMIT, "width": 2, "dash": "dash"}, "xaxis": "x2", "yaxis": "y2",
        "hovertemplate": "limit %{y:.3g} at |ref| %{x:.3g}<extra></extra>",
    }


def _scatter_traces(summary: ErrorSummary) -> list[dict[str, Any]]:
    traces = []
    for points, name, color in ((summary.points, "within tolerance", MUTED), (summary.beyond, "beyond tolerance", FAIL)):
        shown = [(x, y) for x, y in points if x > 0 and y > 0]
        if not shown:
            continue
        traces.append({
            "type": "scatter", "mode": "markers", "x": [x for x, _ in shown], "y": [y for _, y in shown], "name": name,
            "marker": {"color": color, "size": 6, "opacity": 0.8}, "xaxis": "x2", "yaxis": "y2",
            "hovertemplate": "|ref| %{x:.4g}<br>|onnx − ref| %{y:.4g}<extra></extra>",
        })
    line = _limit_line(summary, [x for x, _ in summary.points + summary.beyond])
    return traces + ([line] if line else [])


def error_figure(summary: ErrorSummary, output: str) -> dict[str, Any]:
    """One figure per output: the |onnx − ref| histogram (left) and error against |ref| on log-log axes (right)."""
    lo, hi = summary.log10_range or (-8.0, 0.0)
    limit = typical_limit(summary)
    shapes, notes = [], []
    if limit > 0:
        x = math.log10(limit)
        shapes.append({"type": "line", "xref": "x", "yref": "y domain", "x0": x, "x1": x, "y0": 0, "y1": 1,
                       "line": {"color": LIMIT, "width": 2, "dash": "dash"}})
        notes.append({"xref": "x", "yref": "y domain", "x": x, "y": 1.02, "text": f"limit at median |ref| ({limit:.2g})",
                      "showarrow": False, "font": {"size": 10, "color": LIMIT}, "xanchor": "left"})
        lo, hi = min(lo, x - 0.25), max(hi, x + 0.25)
    zeros = f" <span style='color:{MUTED}'>({summary.zeros} element(s) exactly equal, not on the log axes)</span>" if summary.zeros else ""
    layout = _layout(
        title={"text": f"<b>{output}</b>: |onnx − ref|{zeros}", "x": 0.01, "font": {"size": 13}},
        xaxis={"domain": [0, 0.44], "title": {"text": "|onnx − ref| (log scale)"}, "range": [lo, hi], **_log_ticks(lo, hi)},
        yaxis={"title": {"text": "elements"}, "rangemode": "tozero"},
        xaxis2={"domain": [0.56, 1], "type": "log", "title": {"text": "|ref|"}, "exponentformat": "power"},
        yaxis2={"anchor": "x2", "type": "log", "title": {"text": "|onnx − ref|"}, "exponentformat": "power"},
        shapes=shapes, annotations=notes, height=340,
    )
    return {"data": _histogram_traces(summary) + _scatter_traces(summary), "layout": layout}


def speed_figure(speed: Any) -> dict[str, Any]:
    """Grouped bars, median latency per batch: each labelled call of the original framework (its
    reference call, then e.g. Keras' compiled predict) against ONNX Runtime (p90 as the whisker)."""
    rows = speed.rows
    labels = [f"batch {r.batch}" for r in rows]

    def bars(name: str, timings: list[Any], color: str) -> dict[str, Any]:
        return {
            "type": "bar", "name": name, "x": labels, "y": [t.median_ms if t else None for t in timings],
            "error_y": {"type": "data", "symmetric": False, "array": [t.p90_ms - t.median_ms if t else 0 for t in timings],
                        "arrayminus": [0] * len(timings), "color": "#55606e", "thickness": 1},
            "marker": {"color": color}, "hovertemplate": "%{x}: %{y:.3f} ms median<extra>" + name + "</extra>",
            "text": [f"{t.median_ms:.3g} ms" if t else "" for t in timings], "textposition": "outside",
        }

    per_row = [dict(speed.original_timings(r)) for r in rows]
    calls = list(dict.fromkeys(label for timings in per_row for label in timings))
    shades = [MUTED, "#a9b4c2", "#c9d1db"]
    data = [bars(call, [t.get(call) for t in per_row], shades[min(i, len(shades) - 1)]) for i, call in enumerate(calls)]
    data.append(bars("onnxruntime", [r.onnxruntime for r in rows], ACCENT))
    layout = _layout(
        barmode="group", height=300, title={"text": "<b>Latency</b> (median, whisker to p90)", "x": 0.01, "font": {"size": 13}},
        yaxis={"title": {"text": "ms per call (log scale)"}, "type": "log"},
        annotations=[{"x": label, "y": 0, "yref": "paper", "yshift": -34, "showarrow": False, "font": {"size": 11, "color": PASS},
                      "text": " / ".join(f"{r.speedup_over(t):.2f}x" for _, t in speed.original_timings(r))}
                     for label, r in zip(labels, rows)],
    )
    return {"data": data, "layout": layout}


def variants_figure(names: list[str], latencies: list[float | None], passed: list[bool], batch: int) -> dict[str, Any]:
    """Horizontal bars: each variant's median latency at the selection batch, coloured by parity."""
    shown = [(n, lat, ok) for n, lat, ok in zip(names, latencies, passed) if lat is not None]
    data = [{
        "type": "bar", "orientation": "h", "y": [n for n, _, _ in shown], "x": [lat for _, lat, _ in shown],
        "marker": {"color": [PASS if ok else FAIL for _, _, ok in shown]}, "showlegend": False,
        "text": [f"{lat:.3g} ms" for _, lat, _ in shown], "textposition": "auto",
        "hovertemplate": "%{y}: %{x:.3f} ms<extra></extra>",
    }]
    layout = _layout(
        height=max(180, 46 * len(shown) + 90), margin={"l": 120, "r": 18, "t": 36, "b": 44},
        title={"text": f"<b>Variants</b>: median latency at batch {batch} (green: parity passed)", "x": 0.01, "font": {"size": 13}},
        xaxis={"title": {"text": "ms per call"}, "rangemode": "tozero"}, yaxis={"autorange": "reversed"},
    )
    return {"data": data, "layout": layout}


def exact_figure(output: str, total: int, mismatched: int, ties: int) -> dict[str, Any]:
    """For an output compared exactly (labels, integers): how many elements agree, differ, or tie."""
    parts = [("equal", total - mismatched - ties, PASS), ("ties (excused)", ties, LIMIT), ("differ", mismatched, FAIL)]
    data = [{
        "type": "bar", "orientation": "h", "name": name, "y": [output], "x": [count], "marker": {"color": color},
        "text": [f"{name}: {count}"], "textposition": "inside", "hovertemplate": f"{name}: %{{x}}<extra></extra>",
    } for name, count, color in parts if count]
    layout = _layout(
        barmode="stack", height=150, showlegend=False, margin={"l": 110, "r": 18, "t": 36, "b": 36},
        title={"text": f"<b>{output}</b>: exact comparison, {total} element(s)", "x": 0.01, "font": {"size": 13}},
        xaxis={"range": [0, max(total, 1)], "title": {"text": "elements"}},
    )
    return {"data": data, "layout": layout}
