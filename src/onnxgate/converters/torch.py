"""PyTorch through ``torch.onnx.export``: ExportedPrograms, TorchScript and in-memory modules.

Sources and how they load:

* ``*.pt2`` -- ``torch.export.load``; the program's own dims rule: its dynamic dims
  become dynamic ONNX axes, its static dims stay static (the batch sweep then reports
  the frozen axis).
* ``*.pt`` / ``*.pth`` -- TorchScript (``torch.jit.load``). A file that is a pickled
  whole module is refused unless ``--trust-pickle`` (``torch.load`` runs code); a
  weights-only state dict is named as such, since it is not a model by itself.
* ``nn.Module`` / ``ExportedProgram`` objects -- what a ``module:callable`` factory
  returns (the pipeline calls the factory only under ``--trust-code``).

Conversion tries the dynamo exporter first and falls back to the TorchScript exporter,
recording which one produced the file and why the first failed. Outputs (tensors,
tuples, lists, dicts) are flattened with torch's pytree, the same flattening the
exporter uses, and named from their paths: ``output`` for a single tensor,
``output_0``/``output_1`` for a tuple, ``logits``/``aux_0`` for dict keys.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate._util import installed_versions
from onnxgate.converters.base import Conversion, Converter, ConverterSettings, float64_outputs
from onnxgate.converters.fixes import Applied
from onnxgate.converters.fixes.onnx_ops import EXPORTER_FALLBACK, repaired_rejection
from onnxgate.converters.opsets import check_requested
from onnxgate.trust import Trust
from onnxgate.errors import (
    FrameworkMissingError,
    NeedsSampleError,
    OpsetError,
    OutputMismatchError,
    SampleError,
    SourceError,
    UnsupportedModelError,
    UntrustedSourceError,
)

SUFFIXES = (".pt2", ".pt", ".pth")
TORCHSCRIPT_EXPORTER_MAX_OPSET = 20  # torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
SYNTH_SEED = 0


@dataclass
class TorchModel:
    """A loaded PyTorch source: what it is, how to call it, and its input names."""

    kind: str  # "exported" | "torchscript" | "module"
    obj: Any  # ExportedProgram | ScriptModule | nn.Module
    input_names: list[str]
    required: list[str]  # input names without a default value
    origin: str
    upcast_bf16: bool = False  # --upcast-bf16: export a float32 copy, compare with the bfloat16 original
    keywords: list[str] = field(default_factory=list)  # inputs a program takes by keyword (its in_spec's kwargs)
    axes: dict[str, dict[int, str]] = field(default_factory=dict)  # named dynamic axes, {input: {axis: "batch"}}
    axis_max: dict[str, int] = field(default_factory=dict)  # the largest size a named axis may take ({"sequence": 512})
    _callable: Any = field(default=None, repr=False)

    def callable(self) -> Any:
        """What to run for the reference: ``ep.module()`` for a program, the module otherwise."""
        if self._callable is None:
            self._callable = self.obj.module() if self.kind == "exported" else self.obj
        return self._callable


@dataclass(frozen=True)
class TorchSettings(ConverterSettings):
    """``--upcast-bf16``: export a float32 copy of a bfloat16 model; ``--static``: no dynamic axes."""

    upcast_bf16: bool = False
    static: bool = False


class _RefusedGraph(Exception):
    """An exporter returned a graph the checker or ORT's loader refuses (fix exporter_fallback), or a trace that
    does not generalise."""


@dataclass(frozen=True)
class ExportJob:
    """One export: the model, its call (args, kwargs) on the feeds, names, and the ``--opset``/``--static`` asked for."""

    model: TorchModel
    call: tuple[tuple[Any, ...], dict[str, Any]]
    feeds: dict[str, np.ndarray]
    output_names: list[str]
    requested: int | None
    static: bool


_EXPORTER_LABEL = {"dynamo": "dynamo exporter", "torchscript": "TorchScript exporter"}
_TOOL_NAME = {"dynamo": "dynamo", "torchscript": "TorchScript"}


class TorchConverter(Converter):
    name = "torch"
    reference_call = "eager forward under torch.no_grad()"
    install_hint = "pip install 'onnxgate[torch]'"
    settings_class = TorchSettings

    # -- recognise and load ---------------------------------------------------------------
    def accepts(self, source: Any) -> bool:
        if isinstance(source, (str, Path)):
            return Path(source).suffix.lower() in SUFFIXES
        if "torch" not in sys.modules:  # an object cannot be a torch object if torch is not imported
            return False
        import torch

        return isinstance(source, (torch.nn.Module, torch.export.ExportedProgram)) and not is_transformers_model(source)

    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> TorchModel:
        _require_torch(self.install_hint)
        if not isinstance(source, (str, Path)):
            model = _wrap(source, f"<{type(source).__name__} object>")
        else:
            path = Path(source)
            if not path.is_file():
                raise SourceError(f"source {str(path)!r} does not exist", "check the path")
            model = _wrap(_load_exported(path, trust) if path.suffix.lower() == ".pt2" else _load_pt(path, trust), str(path))
        model.upcast_bf16 = self.settings(options).upcast_bf16 and has_bf16(model)
        return model

    # -- inputs ---------------------------------------------------------------------------
    def feeds(self, model: TorchModel, sample: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        where = sample.path or "the sample"
        if sample.kind == "table":
            raise SampleError(
                f"{where} is a CSV table; a PyTorch model takes tensors",
                f"pass a .npy (one input) or a .npz with keys {model.required}",
            )
        if sample.kind == "array":
            if len(model.required) != 1:
                raise SampleError(
                    f"{where} holds one array but forward takes {len(model.required)} inputs {model.required}",
                    "pass a .npz with one array per input: numpy.savez(path, " + ", ".join(f"{n}=..." for n in model.required) + ")",
                )
            (arr,) = sample.arrays.values()
            named = {model.required[0]: arr}
        else:
            named = dict(sample.arrays)
            unknown = [k for k in named if k not in model.input_names]
            missing = [n for n in model.required if n not in named]
            if unknown or missing:
                raise SampleError(
                    f"{where} has inputs {list(named)}; forward expects {model.input_names}"
                    + (f" (missing {missing})" if missing else ""),
                    "name the .npz arrays after forward's parameters: numpy.savez(path, "
                    + ", ".join(f"{n}=..." for n in model.required) + ")",
                )
        order = [n for n in model.input_names if n in named]
        dtypes = _input_dtypes(model)
        exact = model.kind == "exported"  # a program declares each input's dtype; a module only its float dtype
        feeds = {n: _as_feed(named[n], dtypes.get(n) if exact or named[n].dtype.kind == "f" else None, n, where) for n in order}
        return _float32_feeds(feeds) if model.upcast_bf16 else feeds

    def synthesize(self, model: TorchModel, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        """Inputs for a source that carries them: an ExportedProgram's example inputs or input specs."""
        if model.kind != "exported":
            raise NeedsSampleError(
                f"a {model.kind} model does not record its input shapes",
                f"pass --sample FILE: a .npy (one input) or a .npz with keys {model.required}",
            )
        feeds = _synthesize_exported(model, options)
        return _float32_feeds(feeds) if model.upcast_bf16 else feeds

    # -- conversion -----------------------------------------------------------------------
    def convert(self, model: TorchModel, feeds: dict[str, np.ndarray], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        import torch

        static = self.settings(options).static
        check_requested(opset, exporter_max_opset(), f"torch.onnx.export (torch {torch.__version__})")
        args = call_inputs(model, feeds)
        out_names = _output_names(model, args)
        notes = [f"inputs: {[(n, str(a.dtype), list(a.shape)) for n, a in feeds.items()]}", f"outputs: {out_names}"]
        if model.upcast_bf16:
            model = _float32_copy(model)
            args = call_inputs(model, feeds)
            notes.append(
                "--upcast-bf16: exported a float32 copy of the bfloat16 model (ONNX Runtime's CPU provider has no "
                "bfloat16 kernels); parity is checked against the bfloat16 original at bfloat16 tolerances"
            )
        job = ExportJob(model, args, feeds, out_names, opset, static)
        proto, tool, applied = self._first_export(job, self.exporters(model))
        notes.extend(applied.notes)
        if model.kind == "exported" and not static and not _has_dynamic_dims(model.obj):
            notes.append("the ExportedProgram has static input shapes; the ONNX graph keeps them")
        got = [i.name for i in proto.graph.input]
        init = {i.name for i in proto.graph.initializer}
        got = [n for n in got if n not in init]
        if sorted(got) != sorted(feeds):
            raise OutputMismatchError(
                f"the exported ONNX inputs are {got}; expected {list(feeds)}",
                "report this model to onnxgate; an input may be unused by forward",
            )
        return Conversion(proto, tool, notes)

    # -- the exporters, in order ----------------------------------------------------------
    def exporters(self, model: TorchModel) -> tuple[str, ...]:
        """The exporters to try, in order: dynamo (torch.export) first, then the TorchScript exporter."""
        return ("dynamo", "torchscript")

    def torchscript_context(self, model: TorchModel, applied: Applied) -> Any:
        """What surrounds a TorchScript trace (a converter's known fixes); nothing here."""
        return contextlib.nullcontext()

    def trace_problem(self, job: "ExportJob", proto: Any) -> str | None:
        """Why a TorchScript graph does not generalise beyond the traced inputs; None: not checked here."""
        return None

    def _first_export(self, job: "ExportJob", order: tuple[str, ...]) -> tuple[Any, str, Applied]:
        """The first exporter in ``order`` whose graph is accepted: (proto, tool, fixes and exporter notes).

        An exporter that raises, whose graph the checker or ORT's loader refuses, or whose trace
        does not generalise (:meth:`trace_problem`) is recorded and the next one tried.
        """
        import torch

        failures: list[str] = []
        kept = Applied()
        for name in order:
            if name == "torchscript" and job.requested and job.requested > TORCHSCRIPT_EXPORTER_MAX_OPSET:
                failures.append(f"the TorchScript exporter writes opset <= {TORCHSCRIPT_EXPORTER_MAX_OPSET}, not {job.requested}")
                continue
            applied = Applied()
            try:
                proto = self._export_with(name, job, applied)
            except Exception as exc:  # noqa: BLE001 - every exporter failure is recorded, the next one tried
                failures.append(f"the {_EXPORTER_LABEL[name]} failed: {_one_line(exc)}")
                if isinstance(exc, _RefusedGraph):
                    kept.add(EXPORTER_FALLBACK, failures[-1])
                continue
            kept.merge(applied)
            first = not failures and name == order[0]
            role = "" if first else " fallback"
            kept.notes.append(
                f"exporter: {_EXPORTER_LABEL[name]}" + ("" if first else ", the fallback; " + "; ".join(failures))
                + (f"; the {_EXPORTER_LABEL[order[1]]} is the fallback" if first and len(order) > 1 else "")
            )
            tool = f"torch.onnx.export dynamo={name == 'dynamo'} ({_TOOL_NAME[name]}{role}, torch {torch.__version__})"
            return proto, tool, kept
        if job.requested and job.requested > TORCHSCRIPT_EXPORTER_MAX_OPSET and "torchscript" in order:
            raise OpsetError(
                f"torch.onnx.export: {'; '.join(failures)}",
                f"pass --opset {TORCHSCRIPT_EXPORTER_MAX_OPSET} or lower to allow the TorchScript exporter",
            )
        raise UnsupportedModelError(
            f"torch.onnx.export: {'; '.join(failures)}",
            "see https://pytorch.org/docs/stable/onnx.html for what the exporters support",
        )

    def _export_with(self, name: str, job: "ExportJob", applied: Applied) -> Any:
        """One exporter's graph, repaired and checked (:class:`_RefusedGraph` when it is not fit to return)."""
        from onnxgate.converters.fixes.torch import ROTARY_BATCH, ROTARY_SAFE_OPSET, uses_rotary_embeddings

        if name == "dynamo":
            opset = job.requested
            if opset is None and uses_rotary_embeddings(job.model.obj):
                opset = min(default_opset(), ROTARY_SAFE_OPSET)
                applied.add(ROTARY_BATCH, f"opset {opset}")
            proto = _export_dynamo(job.model, job.call, list(job.feeds), job.output_names, opset or default_opset(), job.static)
            if job.model.kind == "exported":
                rename_dims(proto, program_axis_names(job.model.obj, job.model.input_names))
        else:
            opset = min(job.requested or default_opset(), TORCHSCRIPT_EXPORTER_MAX_OPSET)
            with self.torchscript_context(job.model, applied):
                proto = _export_torchscript(job.model, job.call, list(job.feeds), job.output_names, opset, job.static)
        rejected = repaired_rejection(proto, applied)
        if rejected is not None:
            raise _RefusedGraph(f"its graph is refused: {rejected}")
        problem = self.trace_problem(job, proto) if name == "torchscript" else None
        if problem is not None:
            raise _RefusedGraph(f"the trace does not generalise: {problem}")
        return proto

    # -- reference ------------------------------------------------------------------------
    def reference(self, model: TorchModel, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        import torch

        args, kwargs = call_inputs(model, feeds)
        with torch.no_grad():
            flat = flatten_outputs(model.callable()(*args, **kwargs))
        arrays = {n: _to_numpy(t) for n, t in flat}
        if set(output_names) <= set(arrays):
            return {n: arrays[n] for n in output_names}
        if len(output_names) == len(flat):  # an ONNX file named by another tool: match by position
            return {n: _to_numpy(t) for n, (_, t) in zip(output_names, flat)}
        return arrays  # compare_outputs reports the names that do not match

    def reference64(self, model: TorchModel, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray] | None:
        """A float64 copy of the module (``.double()``) on the same input values; None for
        TorchScript (its graph may fix dtypes), bfloat16 models and modules that refuse float64."""
        module = _float64_copy(model)
        if module is None:
            return None
        double = TorchModel("module", module, model.input_names, model.required, model.origin + " (float64 copy)")
        return float64_outputs(self.reference, double, feeds, output_names)

    def versions(self) -> dict[str, str]:
        return installed_versions("torch", "onnxscript")

    def model_versions(self, model: TorchModel) -> dict[str, str]:
        """transformers too, when the module tree holds its classes (a Hugging Face model passed as torch)."""
        modules = model.obj.modules() if hasattr(model.obj, "modules") else ()
        hf = any((type(m).__module__ or "").startswith("transformers.") for m in modules)
        return {**self.versions(), **(installed_versions("transformers") if hf else {})}


# -- loading ------------------------------------------------------------------------------


def _require_torch(hint: str) -> None:
    """A missing or broken torch is a user error naming the extra, not a traceback."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise FrameworkMissingError(f"the torch converter needs PyTorch, which cannot be imported ({exc})", hint) from None


def _wrap(obj: Any, origin: str) -> TorchModel:
    import torch

    if isinstance(obj, torch.export.ExportedProgram):
        specs = obj.graph_signature.input_specs
        names = [s.arg.name for s in specs if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
        keywords = program_keywords(obj)
        names = names[: len(names) - len(keywords)] + keywords  # a keyword input is named by its keyword
        return TorchModel("exported", obj, names, list(names), origin, keywords=keywords)
    if isinstance(obj, torch.jit.ScriptModule):
        args = obj.forward.schema.arguments[1:]
        names = [a.name for a in args]
        required = [a.name for a in args if not a.has_default_value()]
        return TorchModel("torchscript", obj.eval(), names, required, origin)
    if isinstance(obj, torch.nn.Module):
        names, required = _signature(obj)
        return TorchModel("module", obj.eval(), names, required, origin)
    raise SourceError(
        f"{origin} gave a {type(obj).__name__}, not a torch.nn.Module or ExportedProgram",
        "make the factory return the model itself (an nn.Module or torch.export.ExportedProgram)",
    )


def program_keywords(program: Any) -> list[str]:
    """The inputs an ExportedProgram takes by keyword, in its in_spec's order (``[]`` if all positional)."""
    spec = getattr(getattr(program, "call_spec", None), "in_spec", None)
    if spec is None:
        return []
    children = list(spec.children()) if hasattr(spec, "children") else list(getattr(spec, "children_specs", None) or [])
    if len(children) == 2 and isinstance(children[1].context, list):
        return [str(k) for k in children[1].context]
    return []


def is_transformers_model(obj: Any) -> bool:
    """A ``transformers`` PreTrainedModel (the hf converter's), judged without importing transformers."""
    return "transformers" in sys.modules and any(
        c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers.") for c in type(obj).__mro__
    )


def _signature(module: Any) -> tuple[list[str], list[str]]:
    import inspect

    params = inspect.signature(module.forward).parameters.values()
    plain = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params) and not plain:
        raise SourceError(
            f"{type(module).__name__}.forward takes *args, so its inputs have no names",
            "give forward named parameters, e.g. def forward(self, x, mask)",
        )
    return [p.name for p in plain], [p.name for p in plain if p.default is p.empty]


def _load_exported(path: Path, trust: Trust) -> Any:
    """``torch.export.load`` on bytes scanned first: pickled members (``use_pickle`` weights,
    opaque or custom-object constants, sample inputs that need full unpickling, the legacy
    layout) are refused unless pickles are trusted; a clean archive loads with unpickling
    disabled, from the same bytes that were scanned."""
    import io
    import zipfile

    import torch

    from onnxgate.checks.limits import check_archive
    from onnxgate.trust import require_pickle

    if not zipfile.is_zipfile(path):
        raise SourceError(f"{str(path)!r} is not a torch.export archive (not a zip file)", "save it with torch.export.save(program, path)")
    check_archive(path, repr(str(path)))
    data = path.read_bytes()
    try:
        pickled = pickled_members(data)
    except SourceError as exc:
        raise SourceError(f"{str(path)!r}: {exc.message}", exc.hint) from None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise SourceError(f"{str(path)!r} is not a saved ExportedProgram: {_one_line(exc)}", "save it with torch.export.save") from None
    _register_pytree_types(path, data)
    if pickled:
        require_pickle(trust, f"{str(path)!r}: {pickled[0]}" + (f" (and {len(pickled) - 1} more)" if len(pickled) > 1 else ""),
                       alternative="re-export it so that weights, constants and sample inputs are plain tensors")
    try:
        with _quiet(), (_no_unpickling(repr(str(path))) if not pickled else _nothing()):
            program = torch.export.load(io.BytesIO(data))
    except UntrustedSourceError:
        raise
    except Exception as exc:
        raise SourceError(
            f"{str(path)!r} is not a saved ExportedProgram: {_one_line(exc)}",
            "save it with torch.export.save(torch.export.export(model, args), path); "
            "a torch.save()d module belongs in a .pt file with --trust-pickle",
        ) from None
    return program


_SERIALIZED_TYPE = re.compile(r'\\?"type\\?": \\?"([A-Za-z_][\w.]*)\\?"')


def pytree_types(data: bytes) -> set[str]:
    """The pytree container types a ``.pt2`` archive's input and output specs name (serialized names)."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        texts = [z.read(n).decode("utf-8", "replace") for n in z.namelist() if "/models/" in n and n.endswith(".json")]
    return {m for text in texts for m in _SERIALIZED_TYPE.findall(text)}


def _register_pytree_types(path: Path, data: bytes) -> None:
    """Make the archive's output types known to torch's pytree before loading, or say what is missing.

    A program whose outputs are transformers ``ModelOutput`` objects loads only once the
    module defining them is imported (importing it registers them). onnxgate imports such
    modules from the installed transformers package (library code, not the file's); a type
    from any other module is named in a one-line error instead of the loader's
    "check the warnings above".
    """
    import importlib

    import torch.utils._pytree as pytree

    missing = sorted(t for t in pytree_types(data) if t not in pytree.SERIALIZED_TYPE_TO_PYTHON_TYPE and "." in t)
    for type_name in missing:
        module = type_name.rpartition(".")[0]
        if not module.startswith("transformers."):
            raise SourceError(
                f"{str(path)!r} returns {type_name}, a pytree type registered by the module {module!r}, "
                "which onnxgate does not import for a file",
                f"pass a module:callable factory (with --trust-code) that imports {module} and returns torch.export.load({str(path)!r})",
            )
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise FrameworkMissingError(
                f"{str(path)!r} returns {type_name}; loading it needs transformers, which cannot be imported ({exc})",
                "pip install 'onnxgate[hf]'",
            ) from None


def pickled_members(data: bytes) -> list[str]:
    """What in a ``.pt2`` archive ``torch.export.load`` would unpickle (runs code), from its
    configs and members, without unpickling anything."""
    import io
    import json
    import zipfile

    reasons: list[str] = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        if any(n.endswith("serialized_exported_program.json") for n in names):
            return ["it has the legacy torch.export layout, whose state dict, constants and inputs are unpickled"]
        if not any(n.endswith("archive_format") for n in names):
            raise SourceError(
                f"it is not a saved ExportedProgram (no archive_format member; {', '.join(sorted(names)[:3])} ...)",
                "save it with torch.export.save(torch.export.export(model, args), path); "
                "a torch.save()d module belongs in a .pt file with --trust-pickle",
            )
        for name in names:
            if name.endswith(("weights_config.json", "constants_config.json")):
                reasons += _pickled_payloads(name, json.loads(z.read(name)))
            elif "/data/sample_inputs/" in name and not _weights_only(z.read(name)):
                reasons.append(f"sample inputs {name!r} are not plain tensors (saved with torch.save)")
    return reasons


def _pickled_payloads(name: str, config: Any) -> list[str]:
    from torch.export.pt2_archive.constants import CUSTOM_OBJ_FILENAME_PREFIX, OPAQUE_OBJ_FILENAME_PREFIX

    out = []
    entries = config.get("config", {}) if isinstance(config, dict) else {}
    for fqn, meta in (entries.items() if isinstance(entries, dict) else []):
        meta = meta if isinstance(meta, dict) else {}
        path_name = str(meta.get("path_name", ""))
        if path_name.startswith((CUSTOM_OBJ_FILENAME_PREFIX, OPAQUE_OBJ_FILENAME_PREFIX)):
            out.append(f"constant {fqn!r} is an opaque object ({path_name}), stored as a pickle")
        elif meta.get("use_pickle"):
            out.append(f"{fqn!r} in {name} is pickled (use_pickle)")
    return out


def _weights_only(blob: bytes) -> bool:
    import io
    import pickle

    import torch

    if not blob:
        return True
    try:
        torch.load(io.BytesIO(blob), weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError):
        return False
    return True


@contextlib.contextmanager
def _nothing():
    yield


@contextlib.contextmanager
def _no_unpickling(what: str):
    """While a scanned-clean archive loads: ``torch.load`` is weights-only, and the unpicklers
    ``torch.export.load`` falls back to raise instead of running."""
    import pickle

    import torch

    real_load, real_loads, real_obj = torch.load, pickle.loads, torch._C._pickle_load_obj

    def weights_only(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_load(f, *args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise UntrustedSourceError(f"refusing to unpickle part of {what}", "pass --trust-pickle if you trust this file")

    torch.load, pickle.loads, torch._C._pickle_load_obj = weights_only, refuse, refuse
    try:
        yield
    finally:
        torch.load, pickle.loads, torch._C._pickle_load_obj = real_load, real_loads, real_obj


def _load_pt(path: Path, trust: Trust) -> Any:
    import pickle

    import torch

    try:
        with _quiet():
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        jit_error = _one_line(exc)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # the weights-only unpickler met code: a whole pickled module
        if not trust.pickle:
            raise UntrustedSourceError(
                f"refusing to unpickle {str(path)!r}: it is not TorchScript and loading a pickled module runs arbitrary code",
                "save it with torch.export.save (.pt2) or torch.jit.save, or pass --trust-pickle if you trust this file",
            ) from None
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise SourceError(f"cannot load {str(path)!r} with torch.load: {_one_line(exc)}", "check that it is a PyTorch file") from None
    except Exception:
        raise SourceError(
            f"{str(path)!r} is neither TorchScript nor a torch.save file ({jit_error})",
            "save the model with torch.export.save (.pt2) or torch.jit.save (.pt)",
        ) from None
    if isinstance(obj, torch.nn.Module):
        return obj
    raise SourceError(
        f"{str(path)!r} holds a {type(obj).__name__} (weights only), not a model",
        "pass a module:callable factory that builds the module and loads these weights (with --trust-code)",
    )


# -- inputs -------------------------------------------------------------------------------


def _input_dtypes(model: TorchModel) -> dict[str, Any]:
    """The dtype each input should have: exact for a program, the parameters' float dtype otherwise."""
    import torch

    if model.kind == "exported":
        out = {}
        user = set(model.input_names)
        for node in model.obj.graph.nodes:
            if node.op == "placeholder" and node.name in user and hasattr(node.meta.get("val"), "dtype"):
                out[node.name] = node.meta["val"].dtype
        return out
    floats = [p.dtype for p in model.obj.parameters() if p.is_floating_point()]
    floats += [b.dtype for b in model.obj.buffers() if b.is_floating_point()]
    fdtype = floats[0] if floats else torch.float32
    return {n: fdtype for n in model.input_names}


_NUMPY_OF = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


def _as_feed(arr: np.ndarray, want: Any, name: str, where: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiub":
        raise SampleError(f"{where} input {name!r} holds {arr.dtype} values; a PyTorch model takes numbers", "pass a numeric array")
    target = str(want).replace("torch.", "") if want is not None else None
    if target == "bfloat16":
        import ml_dtypes

        return np.ascontiguousarray(arr.astype(ml_dtypes.bfloat16))
    if target in _NUMPY_OF:
        kind = np.dtype(_NUMPY_OF[target]).kind
        if arr.dtype.kind == "f" and kind in "iu":
            raise SampleError(
                f"{where} input {name!r} holds floats; the model takes {target} (e.g. token ids)",
                f"save the array as integers: x.astype(numpy.{target})",
            )
        return np.ascontiguousarray(arr.astype(_NUMPY_OF[target]))
    if arr.dtype.kind in "iu":  # token ids: embeddings take int64
        return np.ascontiguousarray(arr.astype(np.int64))
    return np.ascontiguousarray(arr)


def call_inputs(model: TorchModel, feeds: dict[str, np.ndarray]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` that bind each feed to the parameter of its name.

    A module takes every feed by keyword (``forward``'s order does not matter, and a
    parameter the feeds skip keeps its default); a program takes the inputs its in_spec
    declares as keywords by keyword and the rest positionally; TorchScript takes a
    positional prefix, then keywords.
    """
    present = [n for n in model.input_names if n in feeds]
    if model.kind == "module":
        return (), {n: _tensor(model, feeds[n]) for n in present}
    if model.kind == "exported":
        positional = [n for n in present if n not in model.keywords]
        return tuple(_tensor(model, feeds[n]) for n in positional), {n: _tensor(model, feeds[n]) for n in present if n in model.keywords}
    prefix = 0
    while prefix < len(present) and present[prefix] == model.input_names[prefix]:
        prefix += 1
    return tuple(_tensor(model, feeds[n]) for n in present[:prefix]), {n: _tensor(model, feeds[n]) for n in present[prefix:]}


def _tensor(model: TorchModel, arr: np.ndarray) -> Any:
    import torch

    if model.upcast_bf16 and arr.dtype == np.float32:  # the bfloat16 original takes bfloat16
        return torch.from_numpy(arr).to(torch.bfloat16)
    if arr.dtype.name == "bfloat16":
        return torch.from_numpy(arr.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(arr, copy=True))


def has_bf16(model: TorchModel) -> bool:
    import torch

    if model.kind == "exported":
        return any(d == torch.bfloat16 for d in _input_dtypes(model).values()) or any(
            t.dtype == torch.bfloat16 for t in model.obj.state_dict.values()
        )
    return any(t.dtype == torch.bfloat16 for t in list(model.obj.parameters()) + list(model.obj.buffers()))


def _float32_copy(model: TorchModel) -> TorchModel:
    """The model with every bfloat16 parameter and buffer in float32, as a plain module to export."""
    import copy

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecation, on deepcopy
        module = copy.deepcopy(model.callable())
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dtype == torch.bfloat16:
            t.data = t.data.float()
    return TorchModel("module", module.eval(), model.input_names, model.required, model.origin + " (float32 copy)",
                      axes=model.axes, axis_max=model.axis_max)


def _float64_copy(model: TorchModel) -> Any:
    """A float64 copy of a plain module; None where that is not faithful: a TorchScript or exported
    program's graph fixes dtypes at export (masks built as float32, casts), so its ``.double()`` copy
    computes a mix, not the same function wider (a distilbert .pt2 differed from it by 6e-3, and
    taking that as the floor let a weight x 1.01 pass)."""
    import copy

    if model.kind in ("torchscript", "exported") or model.upcast_bf16 or has_bf16(model):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return copy.deepcopy(model.callable()).double()  # same train/eval mode as the original
    except Exception:  # noqa: BLE001 - not copyable or not castable: no float64 reference
        return None


def _float32_feeds(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """bfloat16 inputs as float32 (exact: every bfloat16 value is a float32 value)."""
    return {n: a.astype(np.float32) if a.dtype.name == "bfloat16" else a for n, a in feeds.items()}


def _to_numpy(t: Any) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy()


def _synthesize_exported(model: TorchModel, options: dict[str, Any]) -> dict[str, np.ndarray]:
    """The program's example inputs when saved with it (unless --seed/--dim/--input-range ask
    for synthesis); else seeded data from its input specs through inputs.synthesize."""
    from onnxgate.inputs.synthesize import InputSpec, synthesize_from_options

    asked = any(options.get(k) for k in ("dims", "input_ranges", "seed_given"))  # the input stage's keys
    example = getattr(model.obj, "example_inputs", None)
    if example is not None and not asked:
        args, kwargs = example
        import torch.utils._pytree as pytree

        flat = [t for t in pytree.tree_leaves((args, kwargs))]
        if len(flat) == len(model.input_names) and all(hasattr(t, "numpy") for t in flat):
            return {n: _to_numpy(t) for n, t in zip(model.input_names, flat)}
    if options.get("seed") is None:
        options = {**options, "seed": SYNTH_SEED}  # the caller's dict is left as it was
    vals = {n.name: n.meta.get("val") for n in model.obj.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in model.input_names:
        val = vals[name]
        shape = tuple(d if isinstance(d, int) else str(d) for d in val.shape)  # SymInts keep their name
        dtype = str(val.dtype).replace("torch.", "")
        if dtype.startswith("float") or dtype == "bfloat16":
            specs.append(InputSpec(name, np.float32, shape))
        elif dtype == "bool":
            specs.append(InputSpec(name, np.bool_, shape))
        else:  # integer ids: small values stay inside any embedding's vocabulary
            specs.append(InputSpec(name, _NUMPY_OF.get(dtype, np.int64), shape, low=0, high=2, kind="ids"))
    feeds = synthesize_from_options(specs, options)
    return {
        n: _as_feed(a, vals[n].dtype, n, "synthesised input") if a.dtype.kind == "f" else a for n, a in feeds.items()
    }


# -- export -------------------------------------------------------------------------------


def default_opset() -> int:
    """The newest opset both the dynamo exporter and the installed onnx / ONNX Runtime know."""
    import onnx
    from torch.onnx import _constants

    return min(int(_constants.ONNX_MAX_OPSET), int(onnx.defs.onnx_opset_version()), _ort_max_opset())


def exporter_max_opset() -> int:
    """The newest opset the dynamo exporter writes with the installed onnx."""
    import onnx
    from torch.onnx import _constants

    return min(int(_constants.ONNX_MAX_OPSET), int(onnx.defs.onnx_opset_version()))


def _ort_max_opset() -> int:
    """ONNX Runtime releases track onnx; 1.20 knows opset 23 (the ORT operator docs' table)."""
    try:
        from importlib import metadata

        major, minor = (int(x) for x in metadata.version("onnxruntime").split(".")[:2])
    except Exception:
        return 21
    return 23 if (major, minor) >= (1, 20) else 21 if (major, minor) >= (1, 18) else 20


_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "decoder_input_ids", "decoder_attention_mask")


def program_axis_names(program: Any, input_names: list[str]) -> dict[str, str]:
    """Readable names for a program's dim symbols (``s18`` -> ``batch``), where the mapping is clear.

    ``batch``: the one symbol that is axis 0 of every input it appears in (and of at least one
    input). ``sequence``: the one symbol at axis 1 of the 2-D token inputs (``input_ids``,
    ``attention_mask``, ...) that is not the batch. Anything else keeps its symbol.
    """
    shapes = {n: [str(d) for d in _placeholder_shape(program, n)] for n in input_names}
    symbols = {d for dims in shapes.values() for d in dims if not d.isdigit()}
    first = {dims[0] for dims in shapes.values() if dims and dims[0] in symbols}
    batch = [s for s in first if all(s not in dims[1:] for dims in shapes.values())]
    names = {batch[0]: "batch"} if len(batch) == 1 else {}
    text = {dims[1] for n, dims in shapes.items() if n in _TEXT_INPUTS and len(dims) == 2 and dims[1] in symbols}
    text -= set(names)
    if len(text) == 1:
        names[text.pop()] = "sequence"
    return names


def _placeholder_shape(program: Any, name: str) -> tuple[Any, ...]:
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == name:
            return tuple(getattr(node.meta.get("val"), "shape", ()))
    return ()


def rename_dims(proto: Any, names: dict[str, str]) -> None:
    """Symbolic dims of the graph's inputs, outputs and value infos renamed (``s18*2`` -> ``batch*2``)."""
    if not names:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    graph = proto.graph
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if not value.type.HasField("tensor_type"):
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_param = pattern.sub(lambda m: names[m.group(1)], dim.dim_param)


def _has_dynamic_dims(program: Any) -> bool:
    import torch

    for node in program.graph.nodes:
        if node.op == "placeholder" and isinstance(getattr(node.meta.get("val"), "shape", None), torch.Size):
            if any(not isinstance(d, int) for d in node.meta["val"].shape):
                return True
    return False


def _export_dynamo(model: TorchModel, call: tuple[tuple, dict], input_names: list[str], output_names: list[str], opset: int, static: bool) -> Any:
    import torch

    args, kwargs = call
    options: dict[str, Any] = dict(dynamo=True, opset_version=opset, input_names=input_names, output_names=output_names, verbose=False)
    if model.kind == "exported" and not static:
        target, args, kwargs = model.obj, (), None  # the program's own dims become the ONNX axes
    else:
        target = model.callable() if model.kind == "exported" else model.obj
        if model.kind == "module" and not static:
            options["dynamic_shapes"] = _dynamic_shapes(model, kwargs)
    with _quiet():
        program = torch.onnx.export(target, args, kwargs=kwargs or None, **options)
    return program.model_proto


def _dynamic_shapes(model: TorchModel, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Per keyword input: the model's named axes (``batch``, ``sequence``), else an automatic batch axis."""
    import torch

    dims: dict[str, Any] = {}

    def dim(name: str) -> Any:
        return dims.setdefault(name, torch.export.Dim(name, min=1, **({"max": model.axis_max[name]} if name in model.axis_max else {})))

    if model.axes:
        return {n: ({a: dim(d) for a, d in model.axes.get(n, {}).items()} or None) for n in kwargs}
    return {n: ({0: torch.export.Dim.AUTO} if t.dim() else None) for n, t in kwargs.items()}


def _export_torchscript(model: TorchModel, call: tuple[tuple, dict], input_names: list[str], output_names: list[str], opset: int, static: bool) -> Any:
    import onnx
    import torch

    args, kwargs = call
    dynamic = None
    if not static:
        ranks = {n: a.dim() for n, a in zip(input_names, list(args) + list(kwargs.values()))}
        dynamic = {n: dict(model.axes.get(n, {0: "batch"})) for n, rank in ranks.items() if rank}
        dynamic.update({n: {0: "batch"} for n in output_names})
    buf = io.BytesIO()
    with _quiet():
        torch.onnx.export(
            model.callable(),
            args,
            buf,
            kwargs=kwargs or None,
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic,
        )
    return onnx.load_from_string(buf.getvalue())


def _output_names(model: TorchModel, call: tuple[tuple, dict]) -> list[str]:
    """A program's names come from its output spec; a module's from one forward pass."""
    import torch
    import torch.utils._pytree as pytree

    spec = getattr(getattr(model.obj, "call_spec", None), "out_spec", None) if model.kind == "exported" else None
    if spec is not None:
        outputs = pytree.tree_unflatten([torch.empty(0) for _ in range(spec.num_leaves)], spec)
    else:
        with torch.no_grad():
            outputs = model.callable()(*call[0], **call[1])
    return [n for n, _ in flatten_outputs(outputs)]


def flatten_outputs(out: Any) -> list[tuple[str, Any]]:
    """(name, tensor) pairs in pytree order -- the order the exporters give the ONNX outputs.

    Mappings (dicts, transformers' ``ModelOutput``) are walked here by key, since a pytree
    node registered without a flatten_with_keys_fn (every ``ModelOutput`` subclass in
    transformers 4.57) cannot be flattened with paths; other containers go to pytree.
    """
    import torch

    if isinstance(out, torch.Tensor):
        return [("output", out)]
    named = []
    for path, leaf in _leaves_with_path(out, ()):
        name = "_".join(path)
        named.append((f"output_{name}" if path and path[0].isdigit() else name, leaf))
    return named


def _leaves_with_path(out: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    import collections.abc

    import torch
    import torch.utils._pytree as pytree

    if isinstance(out, torch.Tensor):
        return [(path, out)]
    if isinstance(out, collections.abc.Mapping):
        return [leaf for k, v in out.items() for leaf in _leaves_with_path(v, path + (_key_name(k),))]
    if isinstance(out, (list, tuple)) and type(out) in (list, tuple):
        return [leaf for i, v in enumerate(out) for leaf in _leaves_with_path(v, path + (str(i),))]
    if out is None or pytree._get_node_type(out) not in pytree.SUPPORTED_NODES:
        return []
    leaves, _ = pytree.tree_flatten_with_path(out)
    return [(path + tuple(_key_name(k) for k in p), leaf) for p, leaf in leaves if isinstance(leaf, torch.Tensor)]


def _key_name(key: Any) -> str:
    if isinstance(key, (str, int)):
        return re.sub(r"\W", "_", str(key))
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return re.sub(r"\W", "_", str(getattr(key, attr)))
    return re.sub(r"\W", "_", str(key))


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings; the core never prints (they go to the notes' void)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "torch.fx", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR + 10)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _one_line(exc: BaseException) -> str:
    """The gist of a long torch error: its type, and the first line of its cause when it has one."""

    def first(e: BaseException) -> str:
        lines = [l.strip() for l in _ANSI.sub("", str(e)).splitlines() if l.strip()]
        return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__

    text = f"{type(exc).__name__}: {first(exc.__cause__)}" if exc.__cause__ is not None else first(exc)
    return text[:400]
