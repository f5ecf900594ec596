"""PyTorch models for ``onnxgate demo``, built in code (small, seeded, CPU-fast).

Each is saved as a ``.pt2`` ExportedProgram with a dynamic batch dim, with a
``.npy`` (one input) or ``.npz`` (named inputs) sample beside it. torch is imported
inside the functions only, so ``import onnxgate.demo`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.demo_model import DemoModel

BATCH = 8


def torch_models() -> dict[str, tuple[Any, dict[str, np.ndarray]]]:
    """name -> (module in eval mode, {forward parameter name: example array})."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    class Residual(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(x + self.bn2(self.conv2(y)))

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.block = Residual(16)
            self.head = nn.Linear(16, 10)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = self.block(self.stem(image))
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    class TokenLSTM(nn.Module):
        def __init__(self, vocab: int = 100):
            super().__init__()
            self.embed = nn.Embedding(vocab, 16)
            self.lstm = nn.LSTM(16, 32, batch_first=True)
            self.head = nn.Linear(32, 3)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(self.embed(tokens))
            return self.head(out[:, -1])

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(x)

    class TwoInTwoOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 4)
            self.b = nn.Linear(3, 4)

        def forward(self, features: torch.Tensor, extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = torch.tanh(self.a(features) + self.b(extra))
            return h.softmax(-1), h.sum(-1, keepdim=True)

    def bn_stats(m: nn.Module) -> nn.Module:
        for mod in m.modules():  # non-trivial running stats, so BatchNorm folding is really tested
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
        return m.eval()

    f32 = np.float32
    return {
        "torch_small_cnn": (bn_stats(SmallCNN()), {"image": rng.standard_normal((BATCH, 3, 16, 16)).astype(f32)}),
        "torch_lstm_tokens": (TokenLSTM().eval(), {"tokens": rng.integers(0, 100, (BATCH, 12)).astype(np.int64)}),
        "torch_transformer": (Encoder().eval(), {"x": rng.standard_normal((BATCH, 10, 32)).astype(f32)}),
        "torch_two_in_two_out": (
            TwoInTwoOut().eval(),
            {"features": rng.standard_normal((BATCH, 6)).astype(f32), "extra": rng.standard_normal((BATCH, 3)).astype(f32)},
        ),
    }


def export_program(module: Any, inputs: dict[str, np.ndarray], path: Path) -> Path:
    """``torch.export`` with one shared dynamic batch dim, saved as ``.pt2``."""
    import torch

    batch = torch.export.Dim("batch")
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    shapes = {name: {0: batch} for name in inputs}
    program = torch.export.export(module, args, dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return path


def save_sample(inputs: dict[str, np.ndarray], stem: Path) -> Path:
    if len(inputs) == 1:
        path = stem.with_suffix(".npy")
        np.save(path, next(iter(inputs.values())))
    else:
        path = stem.with_suffix(".npz")
        np.savez(path, **inputs)
    return path


def build_torch_demo(workdir: Path) -> list[DemoModel]:
    workdir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (module, inputs) in torch_models().items():
        src = export_program(module, inputs, workdir / f"{name}.pt2")
        out.append(DemoModel(name, src, save_sample(inputs, workdir / name), "torch"))
    return out
