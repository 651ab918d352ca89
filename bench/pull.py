"""Pull speed: `mesh-sidecar pull` against s5cmd, rclone, `aws s3 cp` and kserve-storage.

One `rclone serve s3` on loopback serves four datasets (1 x 256 MiB, 200 x 1 MiB,
2,000 x 4 KiB, and 1 x 1 byte for each tool's fixed cost). Tools run in turn,
alternating their order each round; the script prints each tool's median wall time,
its ratio to the fastest peer and its peak RSS, and draws a PNG. "in-sidecar" is a
pull inside a warm process (the sidecar's case: imports done, client and pools
reused), timed around `pull_atomically` alone.

    make bench-pull            # installs the peers into .venv-bench, then runs this
    .venv/bin/python bench/pull.py [--runs 3] [--datasets big,medium,small,tiny] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mesh_sidecar.testing.processes import free_port, start_process, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
BENCH_BIN = ROOT / ".venv-bench" / "bin"
SIDECAR_BIN = Path(sys.executable).parent
KEY, SECRET = "benchkey", "benchsecret"
MiB = 1024 * 1024
DATASETS = {
    "big": ("1 x 256 MiB", 1, 256 * MiB),
    "medium": ("200 x 1 MiB", 200, MiB),
    "small": ("2,000 x 4 KiB", 2000, 4096),
    # A tool's fixed cost: start, client, listing, one GET.
    "tiny": ("1 x 1 byte", 1, 1),
}
GNU_TIME = shutil.which("time", path="/usr/bin:/bin")
PEERS = ("s5cmd", "rclone", "aws-cli", "kserve-storage")


def make_data(root: Path, names: Sequence[str]) -> None:
    for name in names:
        _label, count, size = DATASETS[name]
        folder = root / "bench" / name
        folder.mkdir(parents=True)
        for i in range(count):
            # In 1 MiB pieces: this script stays small (its RSS is not measured, but
            # a big one slows every tool it starts).
            with open(folder / f"f{i:05d}.bin", "wb") as out:
                for offset in range(0, size, MiB):
                    out.write(os.urandom(min(MiB, size - offset)))


def commands(tool: str, endpoint: str, dataset: str, dest: Path, config: Path) -> list[str]:
    src = f"s3://bench/{dataset}"
    if tool == "mesh-sidecar":
        return [
            str(SIDECAR_BIN / "mesh-sidecar"),
            "pull",
            src,
            str(dest),
            "--storage-config",
            str(config),
            "-q",
        ]
    if tool == "in-sidecar":
        return [sys.executable, __file__, "--in-sidecar", src, str(dest), str(config)]
    if tool == "s5cmd":
        return [str(BENCH_BIN / "s5cmd"), "--endpoint-url", endpoint, "cp", f"{src}/*", f"{dest}/"]
    if tool == "rclone":
        return [
            str(BENCH_BIN / "rclone"), "copy", f":s3:bench/{dataset}", str(dest),
            "--s3-provider", "Other", "--s3-endpoint", endpoint,
            "--s3-access-key-id", KEY, "--s3-secret-access-key", SECRET,
        ]  # fmt: skip
    if tool == "aws-cli":
        return [
            str(BENCH_BIN / "aws"),
            "s3",
            "cp",
            "--recursive",
            "--quiet",
            "--endpoint-url",
            endpoint,
            src,
            str(dest),
        ]
    if tool == "kserve-storage":
        code = (
            "import sys; from kserve_storage import Storage; "
            "Storage.download(sys.argv[1], sys.argv[2])"
        )
        return [str(BENCH_BIN / "python"), "-c", code, src, str(dest)]
    raise ValueError(tool)


def run_once(cmd: list[str], env: dict[str, str], logs: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one run; the in-sidecar worker reports its own time.

    GNU time (a small process) starts the tool, so the peak RSS is the tool's own and
    not that of this script, which a forked child would inherit in its count.
    """
    measured = [GNU_TIME, "-f", "%M", "-o", str(logs / "rss.txt"), *cmd] if GNU_TIME else cmd
    # Output goes to files: some tools print a line per file, which would fill a pipe.
    with open(logs / "stdout.log", "w+b") as out, open(logs / "stderr.log", "w+b") as err:
        start = time.perf_counter()
        proc = subprocess.run(measured, env=env, stdout=out, stderr=err, check=False)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {stderr.strip()[-500:]}")
    if cmd[1:2] == [__file__]:
        elapsed = float(stdout.strip().splitlines()[-1])
    peak_kib = float((logs / "rss.txt").read_text().split()[-1]) if GNU_TIME else float("nan")
    return elapsed, peak_kib / 1024


def in_sidecar(src: str, dest: str, config_file: str) -> None:
    """Worker: one warm-up pull, then one timed pull with the same puller (prints seconds)."""
    import asyncio

    from mesh_sidecar.pullers.base import PullerSettings, StorageSource, pull_atomically
    from mesh_sidecar.pullers.s3 import S3Puller

    bucket, _, path = src.removeprefix("s3://").partition("/")
    config = {**json.loads(Path(config_file).read_text()), "bucket": bucket}
    source = StorageSource("s3", config, path)

    async def main() -> float:
        puller = S3Puller(PullerSettings())
        await pull_atomically(puller, source, Path(dest) / "warm-up")
        shutil.rmtree(Path(dest) / "warm-up")
        start = time.perf_counter()
        await pull_atomically(puller, source, Path(dest) / "model")
        elapsed = time.perf_counter() - start
        await puller.close()
        return elapsed

    print(asyncio.run(main()))


def plot(results: dict[str, dict[str, float]], tools: list[str], path: Path) -> None:
    try:
        sys.path.insert(0, str(next((ROOT / ".venv-bench" / "lib").glob("python3*/site-packages"))))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except (ImportError, StopIteration):
        print("(no plot: matplotlib is in .venv-bench, installed by `make bench-pull`)")
        return
    datasets = list(results)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.6))
    for ax, name in zip([axes] if len(datasets) == 1 else axes, datasets, strict=True):
        values = [results[name].get(t, 0.0) for t in tools]
        colors = ["tab:blue" if t in ("mesh-sidecar", "in-sidecar") else "tab:gray" for t in tools]
        ax.bar(tools, values, color=colors)
        ax.set_title(DATASETS[name][0])
        ax.set_ylabel("median seconds")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--datasets", default="big,medium,small,tiny")
    parser.add_argument("--tools", default="mesh-sidecar,in-sidecar," + ",".join(PEERS))
    parser.add_argument("--plot", type=Path, default=ROOT / ".work" / "bench" / "pull.png")
    parser.add_argument("--in-sidecar", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_sidecar:
        in_sidecar(*args.in_sidecar)
        return 0
    names = args.datasets.split(",")
    tools = args.tools.split(",")
    missing = [t for t in tools if t in PEERS and not BENCH_BIN.exists()]
    if missing:
        print("peers missing: run `make bench-pull` (installs them into .venv-bench)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "S3_USE_HTTPS": "0",
        "S3_VERIFY_SSL": "0",
    }
    try:
        make_data(work / "data", names)
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        env["AWS_ENDPOINT_URL"] = endpoint
        env["S3_ENDPOINT"] = f"127.0.0.1:{port}"
        config = work / "storage-config.json"
        config.write_text(json.dumps({
            "type": "s3", "access_key_id": KEY, "secret_access_key": SECRET,
            "endpoint_url": endpoint, "region": "us-east-1",
        }))  # fmt: skip
        server = start_process(
            [str(BENCH_BIN / "rclone"), "serve", "s3", "--addr", f"127.0.0.1:{port}",
             "--auth-key", f"{KEY},{SECRET}", str(work / "data")],
            name="rclone-serve-s3",
        )  # fmt: skip
        try:
            wait_for_port(port, server)
            results = bench(names, tools, args.runs, endpoint, env, config, work)
        finally:
            server.stop()
        plot({n: {t: r[0] for t, r in per.items()} for n, per in results.items()}, tools, args.plot)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def bench(
    names: list[str], tools: list[str], runs: int, endpoint: str, env: dict[str, str],
    config: Path, work: Path,
) -> dict[str, dict[str, tuple[float, float]]]:  # fmt: skip
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for name in names:
        times: dict[str, list[float]] = {t: [] for t in tools}
        rss: dict[str, float] = dict.fromkeys(tools, 0.0)
        for round_ in range(runs):
            order = tools[round_ % len(tools) :] + tools[: round_ % len(tools)]
            for tool in order:
                dest = work / "out" / f"{tool}-{name}-{round_}"
                dest.mkdir(parents=True)
                seconds, peak = run_once(commands(tool, endpoint, name, dest, config), env, work)
                times[tool].append(seconds)
                rss[tool] = max(rss[tool], peak)
                shutil.rmtree(dest)
        medians = {t: statistics.median(v) for t, v in times.items()}
        peers = [t for t in tools if t in PEERS]
        fastest = min(peers, key=lambda t: medians[t]) if peers else None
        label = DATASETS[name][0]
        print(f"\n{label} ({runs} runs each; fastest peer: {fastest})")
        print(f"  {'tool':<16}{'median s':>10}{'vs fastest':>12}{'peak RSS MB':>13}")
        for tool in tools:
            ratio = medians[tool] / medians[fastest] if fastest else float("nan")
            print(f"  {tool:<16}{medians[tool]:>10.3f}{ratio:>11.2f}x{rss[tool]:>13.0f}")
        results[name] = {t: (medians[t], rss[t]) for t in tools}
    return results


if __name__ == "__main__":
    sys.exit(main())
