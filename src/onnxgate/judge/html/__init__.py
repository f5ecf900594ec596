"""The HTML report: one self-contained file (plotly.js inlined once, no network) per run, gate or zoo verify.

``render_report(report)``, ``render_gate(result)`` and ``render_zoo(report)`` return the page;
:mod:`.views` decides what is shown, :mod:`.figures` the plots, ``templates/`` the layout.
Needs the ``html`` extra (jinja2, plotly).
"""

from onnxgate.judge.html.render import render_gate, render_report, render_zoo

__all__ = ["render_gate", "render_report", "render_zoo"]
