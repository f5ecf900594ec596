"""The hf converter: tiny transformers models built from configs in code (no download), each
from a ``save_pretrained`` directory, a ``module:callable`` factory and a ``.pt2`` program with
keyword inputs; every one passes, and every one is caught when one weight tensor is scaled
by 1.01 (the good ONNX file validated against the damaged original).

Most cases run ``--in-process`` (the conversion and the comparison are the same; the worker
only adds a second torch + transformers import); one runs through the framework worker.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_user_error

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")

os.environ.setdefault("USE_TF", "0")


FACTORY_MODULE = "tests.converters.hf_tiny"
MODELS = ["bert", "distilbert", "t5", "whisper", "gpt2", "llama", "vit"]
CAUSAL = {"gpt2", "llama"}
OUTPUT = {"bert": "logits", "gpt2": "logits", "llama": "logits", "vit": "logits"}  # the rest: last_hidden_state
# fast by default: a factory and a .pt2 here, a directory through the worker below; the rest
# of the 7 x 3 grid is marked slow
FAST = {("gpt2", "factory"), ("vit", "pt2")}


@pytest.fixture(scope="module")
def hfzoo(tmp_path_factory):
    from tests.converters import hf_tiny

    return Zoo(tmp_path_factory.mktemp("hfzoo"), hf_tiny)


class Zoo:
    """Sources built on first use: ``zoo.source(name, kind, broken=False)`` -> CLI source string."""

    def __init__(self, root: Path, factories):
        self.root, self.factories = root, factories

    def source(self, name: str, kind: str, broken: bool = False) -> str:
        fn = name + ("_broken" if broken else "")
        if kind == "factory":
            return f"{FACTORY_MODULE}:{fn}"
        path = self.root / (fn + (".pt2" if kind == "pt2" else ""))
        if not path.exists():
            model = getattr(self.factories, fn)()
            if kind == "dir":
                model.save_pretrained(path)
            else:
                save_program(model, path)
        return str(path)


def save_program(model, path: Path, vmap_free: bool = True) -> None:
    """``torch.export`` with keyword inputs (task-aware ones from the hf converter), dynamic batch/sequence;
    a model that generates is exported inside ``hf.vmap_free_masks`` unless ``vmap_free`` is False."""
    from onnxgate.converters.fixes.hf import vmap_free_masks
    from onnxgate.converters.hf import input_specs, model_inputs
    from onnxgate.inputs.synthesize import synthesize_inputs

    names = model_inputs(model)
    feeds = synthesize_inputs(input_specs(names, model.config), dims={"batch": 3, "sequence": 64})
    kwargs = {n: torch.from_numpy(a) for n, a in feeds.items()}
    batch, sequence = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=1, max=64)
    shapes = {n: ({0: batch, 1: sequence} if a.dim() == 2 else {0: batch}) for n, a in kwargs.items()}
    model.config.use_cache = False
    with vmap_free_masks(model) if vmap_free and model.can_generate() else contextlib.nullcontext():
        program = torch.export.export(model, (), kwargs=kwargs, dynamic_shapes=shapes)
    torch.export.save(program, path)


def _run(cli, zoo, name, kind, tmp_path, *extra):
    out, rep = tmp_path / f"{name}.onnx", tmp_path / f"{name}.json"
    args = ["-q", "run", zoo.source(name, kind), "-o", out, "--report", rep, *extra]
    if kind == "factory":
        args.append("--trust-code")
    r = cli(*args)
    return r, out, (json.loads(rep.read_text()) if rep.exists() else None)


def _grid():
    for name in MODELS:
        for kind in ("dir", "factory", "pt2"):
            marks = () if (name, kind) in FAST else (pytest.mark.slow,)
            yield pytest.param(name, kind, id=f"{name}-{kind}", marks=marks)


@pytest.mark.parametrize("name,kind", list(_grid()))
def test_passes_and_a_weight_scaled_by_1_01_is_caught(cli, hfzoo, tmp_path, name, kind):
    extra = ["--in-process"]
    r, out, report = _run(cli, hfzoo, name, kind, tmp_path, *extra)
    assert r.code == 0, r.out + r.err
    assert report["status"] == "passed"
    shapes = {tuple(next(iter(c["input_shapes"].values()))[:2]) for c in report["cases"]}
    if name in ("vit", "whisper"):  # fixed image / frames: the batch axis only
        assert {s[0] for s in shapes} == {1, 3}
    else:  # text: batch {1, 3}, sequence {64 (the longest), 33, 8}, padded and unpadded rows
        assert shapes == {(3, 64), (1, 64), (3, 33), (3, 8)}, shapes
    outputs = [o for c in report["cases"] for o in c["outputs"]]
    assert OUTPUT.get(name, "last_hidden_state") in {o["name"] for o in outputs}
    notes = report["conversion"]["notes"]
    if kind != "pt2":  # the hf converter: TorchScript first, its trace checked; a causal LM's masks made traceable
        assert "dynamo=False (TorchScript," in report["conversion"]["converter"], report["conversion"]
        assert any("hf.traceable_masks" in n for n in notes) == (name in CAUSAL), notes
    if name in CAUSAL and kind != "pt2":  # language models: top-k token agreement without --topk
        assert report["tolerances"]["topk"] == 5 and all(o["topk_agreement"] == 1.0 for o in outputs)
        assert "top-5 agreement 100%" in r.out, r.out
    if kind == "pt2":  # the program's dim symbols (s0, s1) named as the hf converter names its axes
        dims = [d.dim_param or d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim]
        assert dims[:2] == (["batch", "sequence"] if name not in ("vit", "whisper") else ["batch", dims[1]]), dims
    if name == "llama" and kind == "pt2":  # fix torch.rotary_opset (dynamo): without it, batch 3 fails in ORT
        assert any("torch.rotary_opset" in n for n in notes)
        assert {o.domain or "ai.onnx": o.version for o in onnx.load(out).opset_import}["ai.onnx"] == 22
    broken = hfzoo.source(name, kind, broken=True)
    args = ["-q", "validate", broken, out, *extra] + (["--trust-code"] if kind == "factory" else [])
    caught = cli(*args)
    assert caught.code == 1, caught.out + caught.err


def test_directory_through_the_framework_worker_names_axes_and_inputs(cli, hfzoo, tmp_path):
    r, out, report = _run(cli, hfzoo, "bert", "dir", tmp_path)
    assert r.code == 0, r.out + r.err
    model = onnx.load(out)
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs == {n: ["batch", "sequence"] for n in ("input_ids", "attention_mask", "token_type_ids")}
    assert report["framework"] == "hf" and report["versions"]["transformers"].startswith("4.")
    assert "dynamo=False (TorchScript," in report["conversion"]["converter"]


def test_explicit_task_loads_that_head(cli, hfzoo, tmp_path):
    """A BERT classifier directory loaded as feature extraction: the base model's outputs."""
    r, _, report = _run(cli, hfzoo, "bert", "dir", tmp_path, "--in-process", "--task", "feature-extraction")
    assert r.code == 0, r.out + r.err
    assert {"last_hidden_state", "pooler_output"} <= {o["name"] for c in report["cases"] for o in c["outputs"]}


# -- bad input ----------------------------------------------------------------------------------


def test_unknown_task_is_a_user_error(cli, hfzoo):
    r = cli("run", hfzoo.source("bert", "dir"), "--in-process", "--task", "summarise")
    assert_user_error(r, "summarise", "text-classification")


def test_pickled_weights_are_refused(cli, hfzoo, tmp_path):
    path = tmp_path / "pickled"
    hfzoo.factories.distilbert().save_pretrained(path, safe_serialization=False)
    assert not list(path.glob("*.safetensors"))
    assert_user_error(cli("run", path, "--in-process"), "pytorch_model.bin", "safetensors only")


def test_remote_code_needs_trust_code(cli, hfzoo, tmp_path):
    import shutil

    path = tmp_path / "remote"
    shutil.copytree(hfzoo.source("distilbert", "dir"), path)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (path / "config.json").write_text(json.dumps(config))
    assert_user_error(cli("run", path, "--in-process"), "refusing to load", "--trust-code")


class Pair:
    def __init__(self, a, b):
        self.a, self.b = a, b


class PairModel(torch.nn.Module):
    def forward(self, x):
        return Pair(x + 1, x * 2)


def test_pt2_returning_an_unregistered_pytree_type_names_it(cli, tmp_path):
    """A program whose outputs are a type from a module onnxgate will not import is named in one line."""
    import torch.utils._pytree as pytree

    path = tmp_path / "pair.pt2"
    pytree.register_pytree_node(Pair, lambda p: ([p.a, p.b], None), lambda xs, _: Pair(*xs), serialized_type_name="mylib.outputs.Pair")
    try:
        torch.export.save(torch.export.export(PairModel(), (torch.randn(3, 4),)), path)
    finally:
        pytree._deregister_pytree_node(Pair)
    assert_user_error(cli("run", path, "--in-process"), "mylib.outputs.Pair", "module:callable")


def test_hub_name_without_a_cache_or_network_is_a_user_error(cli, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network attempt, in this process or a worker
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    r = cli("run", "hf:onnxgate-tests/no-such-model", "--in-process")
    assert_user_error(r, "hf:onnxgate-tests/no-such-model")


def test_rotary_fix_recognises_rotary_models_only(hfzoo):
    from onnxgate.converters.fixes.torch import uses_rotary_embeddings

    assert uses_rotary_embeddings(hfzoo.factories.llama())
    assert not uses_rotary_embeddings(hfzoo.factories.bert())


# -- the TorchScript exporter's trace check and mask fix ------------------------------------------


def _export_job(name, scale=1.0):
    from onnxgate.converters.hf import HFConverter
    from onnxgate.converters.torch import ExportJob, _output_names, call_inputs
    from tests.converters import hf_tiny

    converter = HFConverter()
    pretrained = getattr(hf_tiny, name)()
    with torch.no_grad():
        pretrained.get_input_embeddings().weight.mul_(scale)
    model = converter.load(pretrained, trust=None, options={})
    feeds = converter.synthesize(model, options={})
    call = call_inputs(model, feeds)
    return converter, ExportJob(model, call, feeds, _output_names(model, call), None, False)


def test_trace_check_passes_a_faithful_graph_and_names_one_that_differs():
    """The check at batch 2 x sequence 8 compares the graph with the module: the module's own graph passes,
    one that computes something else (embeddings x 1.5) is named, and the dynamo exporter would be tried."""
    from onnxgate.converters.torch import _export_torchscript

    converter, job = _export_job("distilbert")
    _, twin = _export_job("distilbert", scale=1.5)
    good = _export_torchscript(job.model, job.call, list(job.feeds), job.output_names, 18, False)
    other = _export_torchscript(twin.model, twin.call, list(twin.feeds), twin.output_names, 18, False)
    assert converter.trace_problem(job, good) is None
    problem = converter.trace_problem(job, other)
    assert problem and "'last_hidden_state' differs" in problem and "input_ids [2, 8]" in problem, problem


def test_saving_a_causal_lm_program_needs_the_vmap_free_masks_fix(tmp_path):
    """hf.vmap_free_masks, the documented way to save a causal LM as .pt2 with transformers 4.57."""
    from onnxgate.converters.fixes.hf import VMAP_MASKS
    from tests.converters import hf_tiny

    model = hf_tiny.gpt2()
    with pytest.raises(Exception, match="flat_apply"):
        save_program(model, tmp_path / "without.pt2", vmap_free=False)
    save_program(model, tmp_path / "with.pt2")
    assert (tmp_path / "with.pt2").stat().st_size > 0 and "flat_apply" in VMAP_MASKS.symptom


def test_causal_masks_need_the_traceable_masks_fix():
    """Without hf.traceable_masks the TorchScript exporter cannot trace GPT-2's vmap-built masks."""
    from onnxgate.converters.fixes import Applied
    from onnxgate.converters.torch import _export_torchscript

    converter, job = _export_job("gpt2")
    args = (job.model, job.call, list(job.feeds), job.output_names, 18, False)
    with pytest.raises(Exception):
        _export_torchscript(*args)
    applied = Applied()
    with converter.torchscript_context(job.model, applied):
        _export_torchscript(*args)
    assert applied.names == ["hf.traceable_masks"]


def test_a_trace_that_keeps_the_export_length_falls_back_to_dynamo(cli, tmp_path):
    """A model that reads the sequence length as a Python float: the TorchScript graph is right at 64 tokens
    only, the trace check at 8 tokens catches it, and the dynamo exporter writes the file that passes."""
    rep = tmp_path / "r.json"
    r = cli("-q", "run", f"{FACTORY_MODULE}:length_scaled", "--trust-code", "--in-process", "--report", rep)
    assert r.code == 0, r.out + r.err
    conversion = json.loads(rep.read_text())["conversion"]
    assert "dynamo=True (dynamo fallback," in conversion["converter"], conversion
    assert any("the trace does not generalise: output 'last_hidden_state' differs" in n for n in conversion["notes"]), conversion
