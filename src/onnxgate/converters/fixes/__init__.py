"""Known upstream breakages, one small named function each (STYLE 11).

A :class:`Fix` names the breakage: the symptom that shows it, the workaround onnxgate
applies and the upstream issue when there is one. A fix runs only when its symptom is
present; each one applied is recorded in :class:`Applied`, whose notes reach the
report's conversion section as ``fix NAME: WORKAROUND (UPSTREAM)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Fix:
    name: str  # "sklearn.hgb_bool_attribute"
    symptom: str
    workaround: str
    upstream: str | None = None

    def note(self, detail: str = "") -> str:
        where = f" ({self.upstream})" if self.upstream else ""
        extra = f" [{detail}]" if detail else ""
        return f"fix {self.name}: {self.workaround}{extra}{where}"


@dataclass
class Applied:
    """The fixes applied to one conversion, in order, each once."""

    notes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def add(self, fix: Fix, detail: str = "") -> None:
        if fix.name not in self.names:
            self.names.append(fix.name)
            self.notes.append(fix.note(detail))
