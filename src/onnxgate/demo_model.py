"""What every demo builder returns: one model file, its sample and how to load it.

Its own module so that ``demo.py`` (which runs the builders) and the framework builders
(``demo_torch.py``, ``demo_keras.py``) both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class DemoModel:
    name: str
    source: Path
    sample: Path
    framework: str
    trusted_types: tuple[str, ...] = ()  # types the demo wrote itself, so it may trust them
