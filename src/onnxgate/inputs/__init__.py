"""Shared inputs: samples, synthesis from signatures, shape sweeps, evidence sets."""
