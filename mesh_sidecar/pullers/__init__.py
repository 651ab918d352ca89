"""Pullers: one module per storage type, each turning a storage source into local files."""
