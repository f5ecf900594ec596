"""Model zoo manifests, fetch and verify."""
