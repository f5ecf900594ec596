"""Convert -> validate -> publish pipelines."""
