"""Diagnostics beyond the verdict: localisation, speed, provider checks."""
