"""Where it diverges: the first ONNX node whose output differs beyond tolerance.

The candidate is ONNX Runtime with all graph optimisations. The trusted reference is
one of:

* ``"ort-noopt"`` -- the same graph under ONNX Runtime with optimisations disabled
  (catches optimiser and fused-kernel faults);
* ``"onnx.reference"`` -- the same graph under ``onnx.reference.ReferenceEvaluator``,
  ONNX's executable specification (catches ORT kernel faults; slow, small models only);
* an ``onnx.ModelProto`` -- another graph computing the same thing whose tensors carry
  the same names, typically a fresh conversion of the source model (catches a file whose
  weights or nodes were changed after conversion). Only tensors named in both compare.

Intermediate tensors are exposed as extra graph outputs, in memory, in batches whose
estimated size stays under ``max_bytes``: the node outputs are taken in topological
order and the list is bisected until each batch fits; batches run in order and the
search stops at the first batch holding a divergent tensor, so the first divergent
node in graph order is found without ever holding every activation at once.

Every ONNX Runtime run goes through :class:`onnxgate.runtime.ort_runner.OrtRunner`, in a
worker of the shared pool unless ``isolation`` says ``in_process``; a crash or a hang past
``isolation.timeout`` ends the search with the reason in ``Localization.error``. The graph
travels as bytes (it is edited in memory), so a model whose weights are external data has
them read into the copy first, from ``model_dir`` (the model file's own directory).

Caveat (Polygraphy has the same one): exposing a tensor keeps the optimiser from
fusing across it, so an optimiser fault that needs the fusion may vanish when localised;
the report then says no node diverged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.judge.compare import compare_outputs
from onnxgate.judge.tolerances import TolerancePolicy
from onnxgate.runtime.isolation import IsolationPolicy
from onnxgate.runtime.ort_runner import OrtRunner, SessionSpec
from onnxgate.runtime.runner import RunError

DEFAULT_MAX_BYTES = 256 * 1024**2

_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


@dataclass
class Divergence:
    node: str
    op_type: str
    output: str
    node_index: int  # position in the graph's (topological) node list
    max_abs_error: float | None
    mismatched: int
    total: int
    rule: str | None
    problems: list[str]
    inputs: list[str]
    module: str | None = None  # the source framework's module, where it can be mapped

    def message(self) -> str:
        where = f" (module {self.module!r})" if self.module else ""
        err = f"max abs error {self.max_abs_error:.3g}" if self.max_abs_error is not None else "; ".join(self.problems)
        return (
            f"first divergent node: {self.node!r} ({self.op_type}, node #{self.node_index}){where}, "
            f"output {self.output!r}: {err}, {self.mismatched} of {self.total} values beyond tolerance"
        )


@dataclass
class Localization:
    reference: str  # what the candidate was compared against
    divergence: Divergence | None
    compared: int = 0  # tensors compared
    batches: int = 0  # ORT runs of the candidate
    skipped: list[str] = field(default_factory=list)  # tensors that could not be compared, with why
    error: str | None = None  # the search could not finish: ONNX Runtime failed, crashed or timed out
    error_kind: str | None = None  # its RunError kind

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self) -> str:
        if self.error is not None:
            return f"could not localise: {self.error}"
        if self.divergence is not None:
            return f"{self.divergence.message()} (against {self.reference}; {self.compared} tensors compared)"
        return f"no node output diverges from {self.reference} ({self.compared} tensors compared)"


def localize(
    model: Any,
    feeds: dict[str, np.ndarray],
    *,
    reference: Any = "ort-noopt",
    policy: TolerancePolicy | None = None,
    provider: str = "CPUExecutionProvider",
    max_bytes: int | None = None,
    label: str | None = None,
    isolation: IsolationPolicy | None = None,
    model_dir: str | Path | None = None,
) -> Localization:
    """Find the first node (in graph order) whose output differs beyond ``policy``'s tolerance.

    ``isolation`` says where ONNX Runtime runs (default: a worker, no time limit);
    ``model_dir`` is where the model's external data lives (the model file's directory).
    """
    import onnx

    policy = policy or TolerancePolicy()
    isolation = isolation or IsolationPolicy()
    max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    candidate = onnx.ModelProto()
    candidate.CopyFrom(model)
    _load_external_data(candidate, model_dir)
    sizes = _estimated_bytes(candidate, feeds)
    producers = _producers(candidate)
    ref_model = None
    if isinstance(reference, onnx.ModelProto):
        ref_model = onnx.ModelProto()
        ref_model.CopyFrom(reference)
        label = label or "the reference ONNX graph"
        shared = set(_producers(ref_model)) | {i.name for i in ref_model.graph.input}
        names = [n for n in producers if n in shared]
        skipped = [f"{n}: not in the reference graph" for n in producers if n not in shared]
    elif reference in ("ort-noopt", "onnx.reference"):
        label = label or (
            "ONNX Runtime with optimisations disabled" if reference == "ort-noopt" else "onnx.reference (the ONNX spec's evaluator)"
        )
        names, skipped = list(producers), []
    else:
        raise ValueError(f"unknown localisation reference {reference!r}")
    result = Localization(label, None, skipped=skipped)
    for batch in _batches(names, sizes, max_bytes):
        try:
            got = _run_exposed(candidate, batch, feeds, provider, "all", isolation)
            if ref_model is not None:
                want = _run_exposed(ref_model, batch, feeds, provider, "disable", isolation)
            elif reference == "ort-noopt":
                want = _run_exposed(candidate, batch, feeds, provider, "disable", isolation)
            else:
                want = _run_reference_evaluator(candidate, batch, feeds)
        except RunError as exc:
            result.error, result.error_kind = str(exc), exc.kind
            return result
        result.batches += 1
        for name in batch:
            if name not in got or name not in want:
                result.skipped.append(f"{name}: not produced by {'the candidate' if name not in got else label}")
                continue
            result.compared += 1
            (c,) = compare_outputs({name: want[name]}, {name: got[name]}, policy=policy, output_names=[name])
            if not c.passed:
                index, node = producers[name]
                result.divergence = Divergence(
                    node.name or f"#{index}", node.op_type, name, index, c.max_abs_error, c.mismatched, c.total,
                    c.rule, list(c.problems), list(node.input), module=source_module(node),
                )
                return result
    return result


def source_module(node: Any) -> str | None:
    """The framework module that produced ``node``, from exporter metadata where present.

    torch.onnx's dynamo exporter records ``pkg.torch.onnx.name_scopes`` (module path
    segments ending with the op, e.g. ``['', 'enc', 'enc.0', 'linear']``) and
    ``pkg.torch.onnx.class_hierarchy`` on every node: the module is the last scope
    before the op, with its class.
    """
    import ast

    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        classes = ast.literal_eval(meta.get("pkg.torch.onnx.class_hierarchy", "[]"))
    except (ValueError, SyntaxError):
        return None
    if not isinstance(scopes, list) or len(scopes) < 2:
        return None
    path = str(scopes[-2]) or "<root module>"
    cls = classes[-2] if isinstance(classes, list) and len(classes) == len(scopes) else None
    return f"{path} ({cls})" if cls else path


def _producers(model: Any) -> dict[str, tuple[int, Any]]:
    """Tensor name -> (node index, node), for every node output in graph order."""
    out: dict[str, tuple[int, Any]] = {}
    for i, node in enumerate(model.graph.node):
        for name in node.output:
            if name:
                out[name] = (i, node)
    return out


def _estimated_bytes(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, int]:
    """Per tensor, from shape inference at the feeds' concrete shapes; unknown -> the largest input's size."""
    import onnx

    fallback = max((int(np.asarray(v).nbytes) for v in feeds.values()), default=1024)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.initializer[:]  # shape inference needs shapes, not weights
    init_names = {i.name for i in model.graph.initializer}
    for init in model.graph.initializer:
        probe.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    for vi in probe.graph.input:
        if vi.name in feeds and vi.name not in init_names and vi.type.HasField("tensor_type"):
            shape = np.asarray(feeds[vi.name]).shape
            vi.type.tensor_type.ClearField("shape")
            for d in shape:
                vi.type.tensor_type.shape.dim.add().dim_value = int(d)
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True)
    except Exception:
        return {}
    sizes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if dims and all(d is not None for d in dims):
            sizes[vi.name] = int(np.prod(dims)) * _ELEM_BYTES.get(t.elem_type, 8)
        else:
            sizes[vi.name] = fallback
    return sizes


def _batches(names: list[str], sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    """Split ``names`` (in order) by bisection until each batch's estimated size fits."""
    fallback = max(sizes.values(), default=1024)
    stack, out = [names], []
    while stack:
        batch = stack.pop(0)
        total = sum(sizes.get(n, fallback) for n in batch)
        if total > max_bytes and len(batch) > 1:
            mid = len(batch) // 2
            stack[:0] = [batch[:mid], batch[mid:]]
        elif batch:
            out.append(batch)
    return out


def _load_external_data(model: Any, model_dir: str | Path | None) -> None:
    """Read external weights into ``model`` (a copy) from ``model_dir``, so the edited graph runs from bytes."""
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    if model_dir is not None and any(uses_external_data(t) for t in model.graph.initializer):
        load_external_data_for_model(model, str(model_dir))


def _run_exposed(model: Any, names: list[str], feeds: dict[str, np.ndarray], provider: str, optimization: str,
                 isolation: IsolationPolicy) -> dict[str, np.ndarray]:
    """Run ``model`` with exactly ``names`` as its graph outputs (those it produces), as ``isolation`` says."""
    import onnx

    produced = set(_producers(model)) | {i.name for i in model.graph.input}
    original = list(model.graph.output)
    known = {o.name: o for o in original}
    del model.graph.output[:]
    for name in names:
        if name in produced:
            vi = onnx.ValueInfoProto()
            if name in known:
                vi.CopyFrom(known[name])
            else:
                vi.name = name  # no type: ONNX Runtime infers it
            model.graph.output.append(vi)
    try:
        data = model.SerializeToString()
    finally:
        del model.graph.output[:]
        model.graph.output.extend(original)
    inputs = {i.name for i in model.graph.input}
    runner = OrtRunner(SessionSpec(data, provider=provider, optimization=optimization, isolation=isolation,
                                   label=f"the graph with {len(names)} exposed tensor(s)"))
    return runner.infer({k: v for k, v in feeds.items() if k in inputs})


def _run_reference_evaluator(model: Any, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model)
    values = evaluator.run(names, feeds)
    return {n: np.asarray(v) for n, v in zip(names, values)}
