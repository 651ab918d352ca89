"""Pullers by storage type: built-ins plus the `mesh_sidecar.pullers` entry-point group."""

from __future__ import annotations

from mesh_sidecar.plugins import Registry
from mesh_sidecar.pullers.base import Puller

PULLERS: Registry[Puller] = Registry(
    "storage type",
    "mesh_sidecar.pullers",
    {
        "pvc": ("mesh_sidecar.pullers.pvc:PvcPuller", None),
        "s3": ("mesh_sidecar.pullers.s3:S3Puller", "s3"),
        "gcs": ("mesh_sidecar.pullers.gcs:GcsPuller", "gcs"),
        "azure": ("mesh_sidecar.pullers.azure:AzurePuller", "azure"),
        "http": ("mesh_sidecar.pullers.http:HttpPuller", "http"),
    },
)
