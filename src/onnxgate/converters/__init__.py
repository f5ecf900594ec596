"""Converter plugins: the contract, the registry, and the built-in framework modules."""

from onnxgate.converters.base import (
    ENTRY_POINT_GROUP,
    BrokenConverter,
    Conversion,
    Converter,
    ConverterSettings,
    Registry,
    check_contract,
    registry,
)
from onnxgate.trust import Trust

__all__ = [
    "ENTRY_POINT_GROUP",
    "BrokenConverter",
    "Conversion",
    "Converter",
    "ConverterSettings",
    "Registry",
    "Trust",
    "check_contract",
    "registry",
]
