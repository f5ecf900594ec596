"""Hugging Face transformers models through the torch exporter.

Sources:

* a ``save_pretrained`` directory (``config.json`` plus ``*.safetensors``); weights in
  pickles (``pytorch_model.bin``) are refused, and a config that names remote code
  (``auto_map``) needs ``--trust-code``;
* ``hf:ORG/NAME`` -- the same through the hub cache (or the network when there is one);
* a ``PreTrainedModel`` object, e.g. what a ``module:callable`` factory returns.

The task comes from ``--task`` or from ``config.architectures`` (the exact class the
directory was saved from, looked up in the installed transformers only). The model is
wrapped so that it takes its inputs by name and returns a dict of its tensor outputs
(``logits``, ``last_hidden_state``, ...); models that take ``use_cache`` run without
a cache (past key values are neither inputs nor outputs). Text axes are exported as
``batch`` and ``sequence``, other inputs with a dynamic ``batch``. Export, fallback,
feeds and reference are the torch converter's.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate._util import installed_versions
from onnxgate.converters.base import Conversion
from onnxgate.converters.torch import ExportJob, TorchConverter, TorchModel, TorchSettings, has_bf16, is_transformers_model
from onnxgate.errors import FrameworkMissingError, SourceError
from onnxgate.trust import Trust, require_code

HUB_PREFIX = "hf:"
DEFAULT_BATCH = 3  # rows of different lengths: padded and unpadded rows in one batch
DEFAULT_SEQUENCE = 64  # capped at the model's positions; the axis sweep adds 33 and 8 (inputs/sweep.py)
LM_TOPK = 5  # top-k token agreement reported for language models' logits (unless --topk)
LM_TASKS = ("text-generation", "fill-mask")
PROBE_SEQUENCE = 8  # the TorchScript trace is checked at batch 2 and this length
PROBE_RTOL, PROBE_ATOL = 1e-3, 1e-5  # a shape-specific trace is off by far more (0.01-3 on the tiny models)


@dataclass(frozen=True)
class Task:
    """One task: the Auto class that loads it, and how architecture names that do it end."""

    name: str
    auto_class: str
    suffixes: tuple[str, ...]
    encoder: bool = False  # export the encoder of an encoder-decoder model


TASKS = (
    Task("text-classification", "AutoModelForSequenceClassification", ("ForSequenceClassification",)),
    Task("token-classification", "AutoModelForTokenClassification", ("ForTokenClassification",)),
    Task("fill-mask", "AutoModelForMaskedLM", ("ForMaskedLM",)),
    Task("text-generation", "AutoModelForCausalLM", ("ForCausalLM", "LMHeadModel")),
    Task("image-classification", "AutoModelForImageClassification", ("ForImageClassification",)),
    Task("audio-classification", "AutoModelForAudioClassification", ("ForAudioClassification",)),
    Task("speech-encoder", "AutoModel", ("Encoder",), encoder=True),
    Task("feature-extraction", "AutoModel", ("EncoderModel", "Model")),
)
TASK_NAMES = [t.name for t in TASKS]

# what a model's main input says about the rest of its inputs
_TEXT, _IMAGE, _AUDIO = "input_ids", "pixel_values", ("input_features", "input_values")


@dataclass(frozen=True)
class HFSettings(TorchSettings):
    """``--task``: which head to load; the torch converter's ``--static`` and ``--upcast-bf16``."""

    task: str | None = None


class HFConverter(TorchConverter):
    name = "hf"
    install_hint = "pip install 'onnxgate[hf]'"
    settings_class = HFSettings

    def accepts(self, source: Any) -> bool:
        if isinstance(source, str) and source.startswith(HUB_PREFIX):
            return True
        if isinstance(source, (str, Path)):
            return is_pretrained_dir(Path(source))
        return is_transformers_model(source)

    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> TorchModel:
        _require_transformers(self.install_hint)
        settings = self.settings(options)
        task = task_by_name(settings.task)
        if isinstance(source, (str, Path)):
            pretrained, task = load_pretrained(str(source), task, trust)
            origin = str(source)
        else:
            pretrained, origin = source, f"<{type(source).__name__} object>"
            if task is not None and task.encoder and hasattr(pretrained, "get_encoder"):
                pretrained = pretrained.get_encoder()
        model = wrap_pretrained(pretrained.eval(), origin)
        model.obj.task = (task or task_of(type(pretrained).__name__, getattr(pretrained, "main_input_name", _TEXT))).name
        model.upcast_bf16 = settings.upcast_bf16 and has_bf16(model)
        return model

    def convert(self, model: TorchModel, feeds: dict[str, np.ndarray], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        conversion = super().convert(model, feeds, opset=opset, options=options)
        inner = model.obj.model
        conversion.notes.insert(0, f"transformers {type(inner).__name__}, task {model.obj.task}, use_cache={model.obj.fixed.get('use_cache', 'n/a')}")
        return conversion

    def exporters(self, model: TorchModel) -> tuple[str, ...]:
        """The TorchScript exporter first (what optimum uses: 0.5-2 s where dynamo takes 5-7 s on the tiny models;
        benchmarks/bench_hf.py), its trace checked at a second shape; dynamo is the fallback."""
        return ("torchscript", "dynamo")

    def torchscript_context(self, model: TorchModel, applied: Any) -> Any:
        """:data:`~onnxgate.converters.fixes.hf.TRACEABLE_MASKS` for models that build causal masks."""
        from onnxgate.converters.fixes.hf import TRACEABLE_MASKS, vmap_free_masks

        inner = model.obj.model
        if not (hasattr(inner, "can_generate") and inner.can_generate()):
            return contextlib.nullcontext()
        applied.add(TRACEABLE_MASKS)
        return vmap_free_masks(inner)

    def trace_problem(self, job: ExportJob, proto: Any) -> str | None:
        """A trace records one input's shapes and branches: the graph and the module must agree at a second
        shape and mask (batch 2, sequence 8, another seed). A coarse screen (rtol 1e-3): the validation judges."""
        probe = self._probe_feeds(job.model, job.feeds)
        want = self.reference(job.model, probe, job.output_names)
        got = _ort_outputs(proto, probe)
        where = ", ".join(f"{n} {list(a.shape)}" for n, a in probe.items())
        for name in job.output_names:
            ref, out = np.asarray(want[name], dtype=np.float64), np.asarray(got[name], dtype=np.float64)
            if ref.shape != out.shape:
                return f"output {name!r} has shape {list(out.shape)}, the module's {list(ref.shape)} at {where}"
            err = float(np.max(np.abs(ref - out))) if ref.size else 0.0
            if not err <= PROBE_RTOL * float(np.max(np.abs(ref), initial=0.0)) + PROBE_ATOL:
                return f"output {name!r} differs from the module's by {err:.3g} at {where}"
        return None

    def _probe_feeds(self, model: TorchModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from onnxgate.inputs.synthesize import synthesize_from_options

        sequence = next((a.shape[1] for n, a in feeds.items() if n == _TEXT), None)
        dims = {"batch": 2, "sequence": PROBE_SEQUENCE if sequence != PROBE_SEQUENCE else PROBE_SEQUENCE - 3}
        return synthesize_from_options(input_specs(model.input_names, model.obj.model.config), {"seed": 1, "dims": dims})

    def synthesize(self, model: TorchModel, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        """Task-aware inputs: ids below the vocabulary, masks with padded rows, segments, pixels, audio features."""
        from onnxgate.inputs.synthesize import synthesize_from_options

        config = model.obj.model.config
        specs = input_specs(model.input_names, config)
        dims = {"batch": DEFAULT_BATCH, "sequence": min(DEFAULT_SEQUENCE, _max_positions(config) or DEFAULT_SEQUENCE)}
        options = {**options, "dims": {**dims, **(options.get("dims") or {})}}
        if options.get("seed") is None:
            options["seed"] = 0
        return synthesize_from_options(specs, options)

    def versions(self) -> dict[str, str]:
        return installed_versions("torch", "onnxscript", "transformers", "safetensors")

    def default_topk(self, model: TorchModel) -> int | None:
        """Language models' logits are also judged by their top-k tokens (what decoding reads), k = :data:`LM_TOPK`."""
        return LM_TOPK if getattr(model.obj, "task", "") in LM_TASKS else None


# -- recognise and load ---------------------------------------------------------------------


def is_pretrained_dir(path: Path) -> bool:
    """A ``save_pretrained`` directory: ``config.json`` beside weights (safetensors or not: refused later, by name)."""
    return path.is_dir() and (path / "config.json").is_file() and any(
        p.suffix in (".safetensors", ".bin") for p in path.iterdir()
    )


def task_by_name(name: str | None) -> Task | None:
    if name is None:
        return None
    for task in TASKS:
        if task.name == name:
            return task
    raise SourceError(f"--task {name!r} is not a task onnxgate knows", f"pass one of {TASK_NAMES}")


def task_of(architecture: str, main_input: str) -> Task:
    """The task an architecture name says (``BertForSequenceClassification`` -> text-classification)."""
    for task in TASKS:
        if architecture.endswith(task.suffixes):
            if task.encoder and main_input not in _AUDIO:
                continue
            return task
    return TASKS[-1]


def load_pretrained(source: str, task: Task | None, trust: Trust) -> tuple[Any, Task]:
    """The model a directory (or ``hf:NAME``) holds, for ``task`` or the saved architecture."""
    import transformers

    hub = source.startswith(HUB_PREFIX)
    where = source[len(HUB_PREFIX):] if hub else source
    if not hub:
        config_data = _config_json(Path(source))
        _check_weights(Path(source))
        if "auto_map" in config_data:
            require_code(trust, repr(source), why=f"its config.json maps classes to code in the directory ({sorted(config_data['auto_map'])})")
    kwargs = dict(use_safetensors=True, trust_remote_code=trust.code, local_files_only=not hub)
    try:
        config = transformers.AutoConfig.from_pretrained(where, **kwargs)
        architecture = (getattr(config, "architectures", None) or [""])[0]
        cls = _architecture_class(architecture, config.model_type) if task is None else getattr(transformers, task.auto_class)
        model = (cls or transformers.AutoModel).from_pretrained(where, config=config, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        text = " ".join(str(exc).split())[:300]
        raise SourceError(f"transformers cannot load {source!r}: {type(exc).__name__}: {text}", _load_hint(task)) from None
    if task is not None and task.encoder:
        model = model.get_encoder() if hasattr(model, "get_encoder") else model
    return model, task or task_of(type(model).__name__, getattr(model, "main_input_name", _TEXT))


def _config_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{str(path / 'config.json')!r} is not valid JSON: {exc}", "re-save the model with save_pretrained") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise SourceError(f"{str(path / 'config.json')!r} has no model_type", "re-save the model with save_pretrained")
    return data


def _check_weights(path: Path) -> None:
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in path.glob("*.bin"))
    raise SourceError(
        f"{str(path)!r} holds {pickled} (pickles, which run code when loaded); onnxgate loads safetensors only",
        "re-save the model with model.save_pretrained(path, safe_serialization=True)",
    )


def _architecture_class(architecture: str, model_type: str) -> Any:
    """The class named in config.json, from the installed transformers only (never from the directory)."""
    import transformers

    if not architecture.isidentifier():
        return None
    cls = getattr(transformers, architecture, None)
    if cls is None:  # e.g. WhisperEncoder: defined in the model's module, not exported at the top
        module = model_type.replace("-", "_")
        try:
            cls = getattr(importlib.import_module(f"transformers.models.{module}.modeling_{module}"), architecture, None)
        except ImportError:
            cls = None
    return cls if isinstance(cls, type) and hasattr(cls, "from_pretrained") else None


def _load_hint(task: Task | None) -> str:
    if task is None:
        return f"pass --task (one of {TASK_NAMES}) or check that the directory was written by save_pretrained"
    return "check that the directory holds a model for this task (config.json and *.safetensors)"


def _require_transformers(hint: str) -> None:
    try:
        import torch  # noqa: F401

        _lean_transformers_import()
    except ImportError as exc:
        raise FrameworkMissingError(f"the hf converter needs torch and transformers, which cannot be imported ({exc})", hint) from None


def _lean_transformers_import() -> None:
    """Import transformers without what exporting a PyTorch model never uses.

    Where TensorFlow is installed transformers imports it (10 s, unless ``USE_TF=0``), and
    loading any model imports scikit-learn for assisted generation's ``roc_curve`` (1.4 s
    with the SciPy modules it pulls in). Both are skipped when transformers is first
    imported here; a process that imported it already keeps its choice.
    """
    if "transformers" in sys.modules:
        return
    os.environ.setdefault("USE_TF", "0")
    import transformers.utils.import_utils as available

    if "sklearn" not in sys.modules and hasattr(available, "_sklearn_available"):
        available._sklearn_available = False


# -- the module that is exported ------------------------------------------------------------


def wrap_pretrained(pretrained: Any, origin: str) -> TorchModel:
    """A :class:`TorchModel` around ``pretrained``: inputs by name, a dict of tensors out, named axes."""
    names = model_inputs(pretrained)
    fixed: dict[str, Any] = {"return_dict": True}
    if "use_cache" in _forward_parameters(pretrained):
        fixed["use_cache"] = False
    module = _outputs_module()(pretrained, fixed).eval()  # eval itself: an exporter that restores train() mode must not turn dropout on
    text_axes = {0: "batch", 1: "sequence"}
    axes = {n: dict(text_axes) if n != _IMAGE and n not in _AUDIO else {0: "batch"} for n in names}
    if "input_values" in names:  # raw audio: any length
        axes["input_values"] = {0: "batch", 1: "samples"}
    longest = _max_positions(pretrained.config)
    return TorchModel("module", module, names, list(names), origin, axes=axes, axis_max={"sequence": longest} if longest else {})


def model_inputs(pretrained: Any) -> list[str]:
    """The inputs exported: the main one, and for text the attention mask and (BERT-style) token types."""
    main = getattr(pretrained, "main_input_name", _TEXT)
    params = _forward_parameters(pretrained)
    if main != _TEXT:
        return [main]
    names = [_TEXT]
    if "attention_mask" in params:
        names.append("attention_mask")
    if "token_type_ids" in params and int(getattr(pretrained.config, "type_vocab_size", 0) or 0) > 1:
        names.append("token_type_ids")
    return names


def _forward_parameters(pretrained: Any) -> set[str]:
    import inspect

    return set(inspect.signature(pretrained.forward).parameters)


def _max_positions(config: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_length_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@functools.cache
def _outputs_module() -> type:
    """The wrapper class, built on first use so that importing this module never imports torch."""
    import torch

    class PretrainedOutputs(torch.nn.Module):
        """``model(**inputs)`` as a dict of its tensor outputs, with the cache off."""

        def __init__(self, model: Any, fixed: dict[str, Any]):
            super().__init__()
            self.model = model
            self.fixed = fixed
            self.task = ""

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None,
                    input_features=None, input_values=None):
            given = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         pixel_values=pixel_values, input_features=input_features, input_values=input_values)
            out = self.model(**{k: v for k, v in given.items() if v is not None}, **self.fixed)
            return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}

    return PretrainedOutputs


# -- task-aware inputs ------------------------------------------------------------------------


def input_specs(names: list[str], config: Any) -> list[Any]:
    """InputSpecs that fit the model: ids below its vocabulary, padded masks, its image and audio shapes."""
    from onnxgate.inputs.synthesize import InputSpec

    text = ("batch", "sequence")
    specs = []
    for name in names:
        if name == "input_ids":
            specs.append(InputSpec(name, np.int64, text, low=0, high=int(config.vocab_size), kind="ids"))
        elif name == "attention_mask":
            specs.append(InputSpec(name, np.int64, text, kind="padded-mask"))
        elif name == "token_type_ids":
            specs.append(InputSpec(name, np.int64, text, low=0, high=int(config.type_vocab_size), kind="segments"))
        elif name == "pixel_values":
            size = _pair(getattr(config, "image_size", 224))
            specs.append(InputSpec(name, np.float32, ("batch", int(getattr(config, "num_channels", 3)), *size)))
        elif name == "input_features":
            frames = 2 * int(getattr(config, "max_source_positions", 1500))
            specs.append(InputSpec(name, np.float32, ("batch", int(config.num_mel_bins), frames)))
        else:  # input_values: raw audio
            specs.append(InputSpec(name, np.float32, ("batch", "samples")))
    return specs


def _ort_outputs(proto: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``proto`` on ``feeds`` in ONNX Runtime, without graph optimisations (the quickest session to open)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def _pair(size: Any) -> tuple[int, int]:
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))
