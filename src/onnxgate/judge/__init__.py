"""Judging: tolerances, output comparison, failure explanations and the report."""
