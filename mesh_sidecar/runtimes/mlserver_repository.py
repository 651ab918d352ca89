"""A model repository for MLServer that finds a model by name without scanning.

MLServer's default repository globs `**/model-settings.json` under its root and
parses every match on each load, so a load slows down with every model already
in the repository. The sidecar always lays a model out as
`<root>/<name>/model-settings.json` with `name` set, so this repository reads
exactly that file instead.

This module runs inside MLServer's own environment: it imports MLServer and the
standard library only, never the rest of mesh_sidecar (whose dependencies,
grpcio and protobuf among them, need not match MLServer's pins). Enable it in
the model server container with

    pip install --no-deps mesh-sidecar
    MLSERVER_MODEL_REPOSITORY_IMPLEMENTATION=mesh_sidecar.runtimes.mlserver_repository.ModelDirRepository
"""

from __future__ import annotations

import asyncio
import builtins
import os

from mlserver.errors import ModelNotFound
from mlserver.logging import logger
from mlserver.repository import DEFAULT_MODEL_SETTINGS_FILENAME, ModelRepository
from mlserver.repository.load import load_model_settings
from mlserver.settings import ModelSettings


class ModelDirRepository(ModelRepository):
    """One dir per model under the root, named after the model: `<root>/<name>/model-settings.json`.

    `find(name)` opens that one file; `list()` (MLServer's repository index)
    looks one level deep. Models in nested dirs, or in a dir named otherwise,
    are not found: the sidecar never lays them out that way.
    """

    def __init__(self, root: str, **_ignored: object) -> None:
        self._root = os.path.abspath(root) if root else ""

    async def list(self) -> list[ModelSettings]:
        """Every model dir's settings; a dir whose settings do not parse is logged and skipped."""
        # Thousands of small reads: off the event loop, which keeps serving inference.
        return await asyncio.to_thread(_list_model_dirs, self._root)

    # `list` below names the method, hence builtins.list in this class.
    async def find(self, name: str) -> builtins.list[ModelSettings]:
        """The settings of model `name`; ModelNotFound when its dir has none."""
        # One stat and one small read: cheaper inline than a hop to a thread.
        return [_read_model_dir(self._root, name)]


def _list_model_dirs(root: str) -> list[ModelSettings]:
    found: list[ModelSettings] = []
    if not root or not os.path.isdir(root):
        return found
    with os.scandir(root) as entries:
        for entry in entries:
            path = os.path.join(entry.path, DEFAULT_MODEL_SETTINGS_FILENAME)
            if not entry.is_dir() or not os.path.isfile(path):
                continue
            try:
                found.append(load_model_settings(path))
            except Exception:
                logger.exception(f"Failed to load model settings at {path}.")
    return found


def _read_model_dir(root: str, name: str) -> ModelSettings:
    # A name is one path segment: never a way out of the root.
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ModelNotFound(name)
    path = os.path.join(root, name, DEFAULT_MODEL_SETTINGS_FILENAME)
    if not os.path.isfile(path):
        raise ModelNotFound(name)
    # A parse or validation error propagates: MLServer reports it as the load's reason.
    settings: ModelSettings = load_model_settings(path)
    if settings.name != name:
        raise ModelNotFound(name)
    return settings
