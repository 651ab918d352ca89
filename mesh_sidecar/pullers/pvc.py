"""The `pvc` puller: models on a PersistentVolumeClaim mounted at PVC_MOUNTS_DIR/<name>.

Files are linked, not copied. Every path, and every link inside the claim, must
resolve inside the claim: a model must not expose the rest of the file system.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path, PurePosixPath

from mesh_sidecar.aio import Stopped, run_stoppable
from mesh_sidecar.errors import InvalidRequest, NotFound
from mesh_sidecar.pullers.base import Puller, PullProgress, StorageSource, tree_size


class PvcPuller(Puller):
    """Links a model's files from a mounted claim into the destination dir."""

    type = "pvc"

    def _model_path(self, source: StorageSource) -> tuple[Path, Path]:
        """(resolved claim root, resolved model path), both checked."""
        name = source.config.get("name")
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise InvalidRequest("pvc storage config needs a 'name': the claim's name")
        claim = self.settings.pvc_mounts_dir / name
        if not claim.is_dir():
            raise NotFound(f"PVC {name!r} is not mounted")
        claim = claim.resolve()
        parts = PurePosixPath(source.path).parts
        if "\x00" in source.path or ".." in parts:
            raise InvalidRequest(f"model path {source.path!r} leaves PVC {name!r}")
        model = claim.joinpath(*(p for p in parts if p != "/")).resolve()
        if not model.is_relative_to(claim):
            raise InvalidRequest(f"model path {source.path!r} leaves PVC {name!r} through a link")
        if not model.exists():
            raise NotFound(f"nothing at {source.path!r} in PVC {name!r}")
        return claim, model

    async def pull(self, source: StorageSource, dest: Path, progress: PullProgress) -> Path:
        claim, model = self._model_path(source)
        if _is_small(model):  # a few links cost less than the hop to a worker thread
            return _link_tree(claim, model, dest, progress, threading.Event())
        return await run_stoppable(lambda stop: _link_tree(claim, model, dest, progress, stop))

    async def size(self, source: StorageSource) -> int | None:
        _claim, model = self._model_path(source)
        return (await asyncio.to_thread(tree_size, model))[1]


SMALL_DIR_ENTRIES = 32


def _is_small(model: Path) -> bool:
    """A file, or a dir of at most SMALL_DIR_ENTRIES files and no subdirs."""
    if model.is_file():
        return True
    with os.scandir(model) as entries:
        for count, entry in enumerate(entries):
            if count >= SMALL_DIR_ENTRIES or entry.is_dir():
                return False
    return True


def _link_tree(
    claim: Path, model: Path, dest: Path, progress: PullProgress, stop: threading.Event
) -> Path:
    """Mirror `model` under `dest` as links to its files; answer the model's local path."""
    if model.is_file():
        link = dest / model.name
        os.symlink(model, link)
        progress.add(model.stat().st_size, files=1)
        return link
    seen: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(model, followlinks=True):
        real_dir = Path(dirpath).resolve()
        if not real_dir.is_relative_to(claim):
            raise InvalidRequest(f"a link in the model dir leads outside the PVC: {dirpath!r}")
        if real_dir in seen:  # a link loop: do not walk it twice
            dirnames.clear()
            continue
        seen.add(real_dir)
        out_dir = dest / Path(dirpath).relative_to(model)
        out_dir.mkdir(exist_ok=True)
        for name in filenames:
            if stop.is_set():
                raise Stopped
            target = (Path(dirpath) / name).resolve()
            if not target.is_relative_to(claim):
                raise InvalidRequest(f"a link in the model dir leads outside the PVC: {name!r}")
            if not target.exists():
                continue  # a dangling link is not a model file
            os.symlink(target, out_dir / name)
            progress.add(target.stat().st_size, files=1)
    return dest
