"""`mesh-sidecar pull SOURCE DEST [--storage-config FILE]`: the sidecar's pullers, from a shell.

SOURCE is `s3://bucket/key`, `gs://bucket/key`, `az://container/path` (account from
the config), `https://ACCOUNT.blob.core.windows.net/container/path`, `http(s)://...`,
`pvc://claim/path` or a local path. DEST receives what is under the prefix; a single
object lands as `DEST/<its name>`; a single archive is extracted. Exit codes: 0 done,
1 the pull failed (one line on stderr, nothing left in DEST), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mesh_sidecar.errors import SidecarError
from mesh_sidecar.pullers.base import (
    PullerSettings,
    PullProgress,
    PullResult,
    StorageSource,
    pull_atomically,
)
from mesh_sidecar.redact import redact

PROG = "mesh-sidecar pull"
SCHEMES = {"s3": "s3", "gs": "gcs", "az": "azure", "pvc": "pvc"}
AZURE_HOST_SUFFIX = ".blob.core.windows.net"


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


@dataclass(frozen=True)
class ParsedSource:
    """A SOURCE argument as a storage source and the settings its puller needs."""

    source: StorageSource
    settings: PullerSettings


def load_storage_config(path: Path | None) -> dict[str, Any]:
    """The JSON document of `--storage-config` (one key of the storage-config secret)."""
    if path is None:
        return {}
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read --storage-config {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--storage-config {str(path)!r} is not JSON: {exc.msg}") from None
    if not isinstance(config, dict):
        raise UsageError(f"--storage-config {str(path)!r} must hold a JSON object")
    return config


def parse_source(text: str, config: Mapping[str, Any], pvc_mounts_dir: Path) -> ParsedSource:
    """Turn SOURCE (+ the storage config) into the source a puller takes."""
    settings = PullerSettings(pvc_mounts_dir=pvc_mounts_dir)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    merged = dict(config)

    def with_type(kind: str) -> dict[str, Any]:
        declared = merged.get("type")
        if declared and declared != kind:
            raise UsageError(f"SOURCE is {kind} but --storage-config has type {declared!r}")
        merged["type"] = kind
        return merged

    if scheme in SCHEMES and len(scheme) > 1:
        kind = SCHEMES[scheme]
        if not parts.netloc:
            raise UsageError(f"SOURCE {text!r} names no {'claim' if kind == 'pvc' else 'bucket'}")
        cfg = with_type(kind)
        cfg["name" if kind == "pvc" else "bucket"] = parts.netloc
        return ParsedSource(StorageSource(kind, cfg, parts.path.lstrip("/")), settings)
    if scheme == "https" and (parts.hostname or "").endswith(AZURE_HOST_SUFFIX):
        container, _, path = parts.path.lstrip("/").partition("/")
        if not container:
            raise UsageError(f"SOURCE {text!r} names no container")
        cfg = with_type("azure")
        cfg.setdefault("account_name", (parts.hostname or "").removesuffix(AZURE_HOST_SUFFIX))
        cfg["account_url"] = urlunsplit(("https", parts.netloc, "", "", ""))
        cfg["bucket"] = container
        if parts.query:  # a SAS token in the URL
            cfg["sas_token"] = parts.query
        return ParsedSource(StorageSource("azure", cfg, path), settings)
    if scheme in ("http", "https"):
        cfg = with_type("http")
        cfg["url"] = text
        return ParsedSource(StorageSource("http", cfg, ""), settings)
    if scheme and len(scheme) > 1:
        raise UsageError(f"unsupported SOURCE scheme {scheme!r}")
    # A local path: read like a PVC, the path's parent dir being the claim.
    local = Path(text).resolve()
    if not local.exists():
        raise UsageError(f"SOURCE {text!r} does not exist")
    if local.parent == local.parent.parent:
        raise UsageError(f"SOURCE {text!r}: a local source must be below a top-level dir")
    cfg = with_type("pvc")
    cfg["name"] = local.parent.name
    return ParsedSource(
        StorageSource("pvc", cfg, local.name), PullerSettings(pvc_mounts_dir=local.parent.parent)
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `pull` subcommand's arguments."""
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("source", metavar="SOURCE", help="where the model is (see above)")
    parser.add_argument("dest", metavar="DEST", type=Path, help="local dir to fill")
    parser.add_argument(
        "--storage-config",
        metavar="FILE",
        type=Path,
        help="JSON storage config in the storage-config secret's format",
    )
    parser.add_argument(
        "--pvc-mounts-dir",
        metavar="DIR",
        type=Path,
        default=Path("/pvc_mounts"),
        help="where PVCs are mounted, for pvc:// sources (default: /pvc_mounts)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _progress_bar(progress: PullProgress) -> Any:
    from tqdm import tqdm

    bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=True)
    shown = [0]

    def update(p: PullProgress) -> None:
        if p.total_bytes is not None and bar.total != p.total_bytes:
            bar.total = p.total_bytes
        bar.update(p.bytes - shown[0])
        shown[0] = p.bytes
        bar.set_postfix_str(f"{p.files} files", refresh=False)

    progress.listeners.append(update)
    return bar


def pull_into(parsed: ParsedSource, dest: Path, progress: PullProgress) -> tuple[int, int]:
    """Pull into `dest` (created if missing, else it must be an empty dir). Returns
    (files, bytes). On failure `dest` is left as it was."""
    created = not dest.exists()
    if not created and (not dest.is_dir() or any(dest.iterdir())):
        raise SidecarError(f"DEST {str(dest)!r} exists and is not an empty dir")
    dest.mkdir(parents=True, exist_ok=True)
    # Staged inside DEST, so DEST may be a mount point (an init container's volume).
    staging = dest / f".pull-{uuid.uuid4().hex[:8]}"
    try:
        result = asyncio.run(_pull(parsed, staging, progress))
        model = result.path
        for entry in [model] if model != staging else list(staging.iterdir()):
            entry.rename(dest / entry.name)
        shutil.rmtree(staging, ignore_errors=True)
        return result.files, result.bytes
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        raise


async def _pull(parsed: ParsedSource, staging: Path, progress: PullProgress) -> PullResult:
    from mesh_sidecar.pullers.registry import PULLERS

    puller = PULLERS.get(parsed.source.type)(parsed.settings)
    try:
        return await pull_atomically(puller, parsed.source, staging, progress)
    finally:
        await puller.close()


def run(args: argparse.Namespace) -> int:
    """Run the pull; one line on stderr and a non-zero exit code on failure."""
    config: Mapping[str, Any] = {}
    try:
        config = load_storage_config(args.storage_config)
        parsed = parse_source(args.source, config, args.pvc_mounts_dir)
    except UsageError as exc:
        print(f"{PROG}: error: {redact(exc, config)}", file=sys.stderr)
        return 2
    progress = PullProgress()
    bar = None if args.quiet or not sys.stderr.isatty() else _progress_bar(progress)
    try:
        files, nbytes = pull_into(parsed, args.dest, progress)
    except SidecarError as exc:
        print(f"{PROG}: error: {redact(exc, parsed.source.config)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was kept", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback (it may hold a secret)
        detail = redact(exc, parsed.source.config)
        print(f"{PROG}: error: {type(exc).__name__}: {detail}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    if bar is not None:
        print(f"{files} files, {nbytes} bytes -> {args.dest}", file=sys.stderr)
    return 0
