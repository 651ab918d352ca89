"""Runtimes by name: built-ins plus the `mesh_sidecar.runtimes` entry-point group."""

from __future__ import annotations

from mesh_sidecar.plugins import Registry
from mesh_sidecar.runtimes.base import RuntimeAdapter

RUNTIMES: Registry[RuntimeAdapter] = Registry(
    "runtime",
    "mesh_sidecar.runtimes",
    {
        "simple-string": ("mesh_sidecar.runtimes.simple_string:SimpleStringAdapter", None),
        "forward": ("mesh_sidecar.runtimes.forward:ForwardAdapter", None),
        "triton": ("mesh_sidecar.runtimes.triton:TritonAdapter", None),
        "mlserver": ("mesh_sidecar.runtimes.mlserver:MLServerAdapter", None),
    },
)
