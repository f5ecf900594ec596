"""Which execution provider ran which node, from ONNX Runtime's own graph-assignment records.

ONNX Runtime 1.23+ records, per session, the subgraphs each execution provider
took (``session.record_ep_graph_assignment_info`` + ``get_provider_graph_assignment_info``).
That is the partitioner's actual decision, so a fallback to the CPU provider is seen
as ONNX Runtime made it, not guessed from an op list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RECORD_ASSIGNMENT_KEY = "session.record_ep_graph_assignment_info"


@dataclass
class Placement:
    """Where the nodes of one session ran: counts per provider, and the ops that fell back to CPU."""

    provider: str
    optimization: str
    nodes: int = 0
    by_provider: dict[str, int] = field(default_factory=dict)
    fallback_ops: dict[str, int] = field(default_factory=dict)  # op type -> nodes on another provider
    subgraphs: int = 0  # how many subgraphs the requested provider took (each is a compile/launch unit)
    error: str | None = None

    @property
    def taken(self) -> int:
        return self.by_provider.get(self.provider, 0)

    @property
    def fallback(self) -> int:
        return self.nodes - self.taken

    @property
    def full(self) -> bool:
        return self.error is None and self.fallback == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "optimization": self.optimization,
            "nodes": self.nodes,
            "taken": self.taken,
            "fallback": self.fallback,
            "full": self.full,
            "by_provider": self.by_provider,
            "fallback_ops": self.fallback_ops,
            "subgraphs": self.subgraphs,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Placement":
        return cls(
            d["provider"], d["optimization"], d.get("nodes", 0), dict(d.get("by_provider", {})),
            dict(d.get("fallback_ops", {})), d.get("subgraphs", 0), d.get("error"),
        )


def placement_of(session: Any, provider: str, optimization: str) -> Placement:
    """Read the assignment records of an ORT session created with ``RECORD_ASSIGNMENT_KEY=1``."""
    placement = Placement(provider, optimization)
    try:
        subgraphs = session.get_provider_graph_assignment_info()
    except Exception as exc:  # older ORT, or the session was created without the config entry
        placement.error = f"ONNX Runtime gave no graph-assignment records: {' '.join(str(exc).split())[:200]}"
        return placement
    for sg in subgraphs:
        nodes = list(sg.get_nodes())
        placement.by_provider[sg.ep_name] = placement.by_provider.get(sg.ep_name, 0) + len(nodes)
        placement.nodes += len(nodes)
        if sg.ep_name == provider:
            placement.subgraphs += 1
            continue
        for node in nodes:
            op = f"{node.domain}:{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            placement.fallback_ops[op] = placement.fallback_ops.get(op, 0) + 1
    placement.fallback_ops = dict(sorted(placement.fallback_ops.items()))
    return placement
