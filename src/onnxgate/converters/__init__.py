"""Converter plugins: the protocol, the registry, and the built-in framework modules."""

from onnxgate.converters.base import (
    ENTRY_POINT_GROUP,
    BrokenConverter,
    Conversion,
    Converter,
    Registry,
    Trust,
    registry,
)

__all__ = ["ENTRY_POINT_GROUP", "BrokenConverter", "Conversion", "Converter", "Registry", "Trust", "registry"]
