"""Jinja2 rendering of the views into one self-contained HTML page."""

from __future__ import annotations

import functools
from typing import Any

from onnxgate.errors import OnnxgateError
from onnxgate.judge.html.views import ModelView, format_number, gate_view, report_view, zoo_view

INSTALL_HINT = "install the html extra: pip install 'onnxgate[html]' (jinja2 and plotly)"


def check_available() -> None:
    """Refuse --html before any work when jinja2 or plotly is missing (a user error, exit 2)."""
    import importlib.util

    missing = [m for m in ("jinja2", "plotly") if importlib.util.find_spec(m) is None]
    if missing:
        raise OnnxgateError(f"--html needs {' and '.join(missing)}, which is not installed", INSTALL_HINT)


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    try:
        import jinja2
    except ImportError:
        raise OnnxgateError("--html needs jinja2, which is not installed", INSTALL_HINT) from None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("onnxgate.judge.html", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number  # one number format for views and templates
    return env


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as bundled with the installed plotly package (read from disk, never fetched)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise OnnxgateError("--html needs plotly, which is not installed", INSTALL_HINT) from None
    return get_plotlyjs().replace("</script", "<\\/script")


def _page(template: str, title: str, status: str, models: list[ModelView], **context: Any) -> str:
    from markupsafe import Markup

    charts = [chart for m in models for chart in m.charts()]
    return _environment().get_template(template).render(
        title=title, status=status, models=models, charts=charts,
        plotly_js=Markup(plotly_js()) if charts else "", **context,
    )


def render_report(report: Any) -> str:
    """``run``/``validate --html``: one model's page."""
    model = report_view(report)
    return _page("report.html.j2", f"onnxgate: {model.title}", report.status, [model], model=model)


def render_gate(result: Any) -> str:
    """``gate --html``: one row per model, each linking to its detail in the same file."""
    view = gate_view(result)
    return _page("collection.html.j2", view.title, view.status, view.models, view=view)


def render_zoo(report: Any) -> str:
    """``zoo verify --html``: one row per model, each linking to its detail in the same file."""
    view = zoo_view(report)
    return _page("collection.html.j2", view.title, view.status, view.models, view=view)
