"""Feeds bind to parameters by name, for any torch source (the bug transformers models showed first).

* a factory module whose ``forward`` has a parameter the sample skips, before one it names
  (GPT-2's ``(input_ids, past_key_values, ..., attention_mask)``);
* a ``.pt2`` exported with keyword inputs (``kwargs=``), which the program must get by keyword.

Each also runs a broken twin (one weight x 1.01) that must be caught.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

MODULE = '''
import torch
from torch import nn


class SkipMiddle(nn.Module):
    """forward(x, state=None, mask=None): a sample with x and mask must not put mask in state."""

    def __init__(self, scale=1.0):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)
        with torch.no_grad():
            self.lin.weight.mul_(scale)

    def forward(self, x, state=None, mask=None):
        if state is not None:
            raise TypeError("state was given: the feeds were bound by position")
        return self.lin(x) * mask


def skip_middle():
    return SkipMiddle().eval()


def skip_middle_broken():
    return SkipMiddle(1.01).eval()
'''


@pytest.fixture(scope="module")
def bindzoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("bind")
    (root / "bind_factories.py").write_text(MODULE)
    sys.path.insert(0, str(root))
    import bind_factories

    rng = np.random.default_rng(0)
    np.savez(root / "sample.npz", x=rng.standard_normal((5, 4)).astype(np.float32), mask=rng.standard_normal((5, 3)).astype(np.float32))
    for name in ("skip_middle", "skip_middle_broken"):
        model = getattr(bind_factories, name)()
        kwargs = {"x": torch.randn(5, 4), "mask": torch.randn(5, 3)}
        batch = torch.export.Dim("batch")
        program = torch.export.export(model, (), kwargs=kwargs, dynamic_shapes={"x": {0: batch}, "mask": {0: batch}})
        torch.export.save(program, root / f"{name}.pt2")
    yield root
    sys.path.remove(str(root))
    sys.modules.pop("bind_factories", None)


def test_factory_feeds_are_bound_by_name_and_a_broken_twin_is_caught(cli, bindzoo, tmp_path):
    out = tmp_path / "m.onnx"
    sample = bindzoo / "sample.npz"
    r = cli("-q", "run", "bind_factories:skip_middle", "--trust-code", "--in-process", "--sample", sample, "-o", out)
    assert r.code == 0, r.out + r.err
    r = cli("-q", "validate", "bind_factories:skip_middle_broken", out, "--trust-code", "--in-process", "--sample", sample)
    assert r.code == 1, r.out + r.err


def test_pt2_with_keyword_inputs_gets_them_by_keyword(cli, bindzoo, tmp_path):
    out = tmp_path / "m.onnx"
    r = cli("-q", "run", bindzoo / "skip_middle.pt2", "--in-process", "-o", out)  # its example inputs
    assert r.code == 0, r.out + r.err
    r = cli("-q", "run", bindzoo / "skip_middle.pt2", "--in-process", "--sample", bindzoo / "sample.npz")
    assert r.code == 0, r.out + r.err
    r = cli("-q", "validate", bindzoo / "skip_middle_broken.pt2", out, "--in-process", "--sample", bindzoo / "sample.npz")
    assert r.code == 1, r.out + r.err


class _Pair(torch.nn.Module):
    def forward(self, x, y):
        return x.sum(-1), y.sum(-1)


def test_program_symbols_are_named_batch_and_sequence_where_clear():
    """A program's dims come as symbols (s0, s1): the shared axis 0 is ``batch``, the token inputs' axis 1
    ``sequence``; independent first axes (two batches) keep their symbols."""
    from onnxgate.converters.torch import program_axis_names

    ids = torch.zeros(3, 7, dtype=torch.long)
    batch, seq = torch.export.Dim("b", min=2), torch.export.Dim("t", min=2)
    program = torch.export.export(_Pair(), (ids, ids), dynamic_shapes={"x": {0: batch, 1: seq}, "y": {0: batch, 1: seq}})
    x_dims = [str(d) for d in next(n for n in program.graph.nodes if n.op == "placeholder").meta["val"].shape]
    assert program_axis_names(program, ["x", "y"]) == {x_dims[0]: "batch"}  # x, y are not token inputs: t stays
    tokens = torch.export.export(_Pair(), (), kwargs={"x": ids, "y": ids},
                                 dynamic_shapes={"x": {0: batch, 1: seq}, "y": {0: batch, 1: seq}})
    assert sorted(program_axis_names(tokens, ["x", "y"]).values()) == ["batch"]
    two = torch.export.export(_Pair(), (torch.zeros(3, 4), torch.zeros(5, 4)),
                              dynamic_shapes={"x": {0: torch.export.Dim("n")}, "y": {0: torch.export.Dim("m")}})
    assert program_axis_names(two, ["x", "y"]) == {}
