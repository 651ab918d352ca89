"""mesh-sidecar: a model-serving sidecar for ModelMesh."""

__version__ = "0.1.0"
