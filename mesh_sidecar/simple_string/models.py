"""The loaded models of the simple-string server: name -> text, nothing more.

Per-model state is kept to one dict entry (the name and the text bytes) so
that 20,000 models cost a few megabytes. Loads and unloads of one name are
serialised; different names proceed in parallel.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

MODEL_FILE = "model.txt"
#: A model's text is held in memory for every request: refuse files bigger than this.
MAX_MODEL_TEXT_BYTES = 1 << 20
#: Bookkeeping of one loaded model beyond its text (dict slot, name, bytes object),
#: an upper bound of what `bench/simple_string_density.py` measures per model.
MODEL_OVERHEAD_BYTES = 512


class ModelError(Exception):
    """A load, unload or lookup failed; carries the gRPC status code to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def model_size(text: bytes) -> int:
    """The memory a loaded model takes, as reported to ModelMesh."""
    return MODEL_OVERHEAD_BYTES + len(text)


def model_text_file(path: Path) -> Path:
    """The text file of the model at `path`: `path/model.txt`, or `path` itself if a file."""
    if path.is_dir():
        candidate = path / MODEL_FILE
        if not candidate.is_file():
            raise ModelError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{path} has no {MODEL_FILE}: a simple-string model is a directory "
                f"with {MODEL_FILE}, or a single text file",
            )
        return candidate
    if path.is_file():
        return path
    raise ModelError(grpc.StatusCode.NOT_FOUND, f"{path} does not exist")


def read_model_text(path: Path) -> bytes:
    """Read a model's text from a dir with `model.txt` or a single file (blocking)."""
    text_file = model_text_file(path)
    try:
        with text_file.open("rb") as f:
            # Check the size first: reading with a 1 MiB cap would allocate 1 MiB per
            # load, and the freed buffers fragment the heap (RSS grows by KiBs per model).
            too_big = os.fstat(f.fileno()).st_size > MAX_MODEL_TEXT_BYTES
            text = b"" if too_big else f.read()
    except OSError as exc:
        raise ModelError(
            grpc.StatusCode.INTERNAL, f"cannot read {text_file}: {exc.strerror}"
        ) from None
    if too_big or len(text) > MAX_MODEL_TEXT_BYTES:
        raise ModelError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{text_file} is over the {MAX_MODEL_TEXT_BYTES} byte limit of a model's text",
        )
    return text


def predict_size(path: Path) -> int | None:
    """The size a model at `path` would take once loaded, from its file size; None if unknown."""
    try:
        return MODEL_OVERHEAD_BYTES + model_text_file(path).stat().st_size
    except (ModelError, OSError):
        return None


class ModelStore:
    """The models a server has loaded, by name."""

    def __init__(self, repository: Path | None = None) -> None:
        self.repository = repository
        self._texts: dict[str, bytes] = {}
        #: Changes whenever the set of loaded models does (answers can be cached by it).
        self.generation = 0
        # Only names with a load or unload in flight have a lock: nothing is kept per model.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, name: object) -> bool:
        return name in self._texts

    def names(self) -> Iterator[str]:
        """Names of the loaded models."""
        return iter(list(self._texts))

    def text(self, name: str) -> bytes:
        """The text of a loaded model; NOT_FOUND when it is not loaded."""
        try:
            return self._texts[name]
        except KeyError:
            raise ModelError(grpc.StatusCode.NOT_FOUND, f"model {name!r} is not loaded") from None

    def resolve(self, name: str, path: str) -> Path:
        """Where to load `name` from: `path` if given, else `<repository>/<name>`."""
        if path:
            return Path(path)
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise ModelError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid model name {name!r}")
        if self.repository is None:
            raise ModelError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"no path given for model {name!r} and the server has no model repository",
            )
        return self.repository / name

    @asynccontextmanager
    async def _serialised(self, name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    async def load(self, name: str, path: Path) -> int:
        """Load (or reload) `name` from `path`; answers its size."""
        if not name:
            raise ModelError(grpc.StatusCode.INVALID_ARGUMENT, "a model name is required")
        async with self._serialised(name):
            # A thread keeps a slow disk from stalling every other call.
            text = await asyncio.to_thread(read_model_text, path)
            self._texts[name] = text
            self.generation += 1
        return model_size(text)

    async def unload(self, name: str) -> None:
        """Unload `name`; NOT_FOUND when it is not loaded."""
        async with self._serialised(name):
            if self._texts.pop(name, None) is None:
                raise ModelError(grpc.StatusCode.NOT_FOUND, f"model {name!r} is not loaded")
            self.generation += 1

    def purge(self) -> int:
        """Unload every model; answers how many there were."""
        count = len(self._texts)
        self._texts.clear()
        self.generation += 1
        return count

    def size(self, name: str) -> int:
        """The size of a loaded model; NOT_FOUND when it is not loaded."""
        return model_size(self.text(name))

    async def index(self, ready_only: bool) -> list[tuple[str, bool]]:
        """(name, loaded) for the loaded models and, unless `ready_only`, the
        repository's models that are not loaded."""
        loaded = sorted(self._texts)
        entries = [(name, True) for name in loaded]
        if ready_only or self.repository is None:
            return entries
        available = await asyncio.to_thread(_repository_models, self.repository)
        loaded_set = set(loaded)
        return entries + [(name, False) for name in available if name not in loaded_set]


def _repository_models(repository: Path) -> list[str]:
    """Names of the model dirs in a repository (blocking)."""
    try:
        with os.scandir(repository) as it:
            return sorted(e.name for e in it if e.is_dir() and Path(e.path, MODEL_FILE).is_file())
    except OSError:
        return []
