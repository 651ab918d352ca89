"""MLServer load time as models accumulate, with and without the sidecar's repository module.

For each repository (MLServer's default, which globs every model-settings.json
on each load, and `ModelDirRepository`, which opens `<root>/<name>/model-settings.json`)
and each count of models already loaded, a real MLServer starts with that many
tiny sklearn models laid out as the sidecar lays them out, loads them all at
start-up, then one more model is loaded and unloaded several times with
RepositoryModelLoad. A second part measures the sidecar's overhead: loadModel
through `mesh-sidecar serve --runtime mlserver` (PVC link, layout, load) against
a direct RepositoryModelLoad of the same model.

    .venv/bin/python bench/mlserver_repository.py [--counts 10 500 2000] [--repeat 30]

Prints a table, writes the figures as JSON and a plot (PNG) under docs/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import tritonclient.grpc as triton_grpc

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.runtimes.base import ModelFiles, RuntimeSettings
from mesh_sidecar.runtimes.layout import apply_layout
from mesh_sidecar.runtimes.mlserver import MLServerAdapter
from mesh_sidecar.testing.mlserver import run_mlserver, train_iris_model
from mesh_sidecar.testing.processes import run_sidecar

DOCS = Path(__file__).resolve().parents[1] / "docs"
REPOSITORIES = {"default (glob)": False, "ModelDirRepository": True}


def lay_out(root: Path, model_id: str, model_file: Path) -> None:
    """Pull (a copy) and lay out one model exactly as the sidecar does."""
    pulled = root / model_id
    pulled.mkdir()
    shutil.copy(model_file, pulled / "model.joblib")
    adapter = MLServerAdapter(RuntimeSettings(address="", root_model_dir=root))
    model = ModelFiles(model_id, "sklearn", None, pulled, 0)
    repo = adapter.repository_path(model_id)
    assert repo is not None
    apply_layout(adapter.plan_layout(model), repo)


def time_loads(address: str, model_id: str, repeat: int) -> list[float]:
    """Seconds per RepositoryModelLoad of `model_id`, unloading between loads.

    One load first, not counted: it warms MLServer's caches for this model.
    """
    times = []
    with triton_grpc.InferenceServerClient(address) as client:
        client.load_model(model_id)
        client.unload_model(model_id)
        for _ in range(repeat):
            started = time.perf_counter()
            client.load_model(model_id)
            times.append(time.perf_counter() - started)
            client.unload_model(model_id)
    return times


def bench_repository(model_file: Path, count: int, fast: bool, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mlserver-bench-") as tmp:
        root = Path(tmp)
        for i in range(count):
            lay_out(root, f"m{i:05d}", model_file)
        started = time.perf_counter()
        # The `count` models load at start-up: one scan of the repository, not one per model.
        with run_mlserver(
            root, fast_repository=fast, load_at_startup=True, timeout=1800
        ) as mlserver:
            startup = time.perf_counter() - started
            with triton_grpc.InferenceServerClient(mlserver.address) as client:
                index = client.get_model_repository_index()
            loaded = sum(1 for m in index.models if m.state == "State.READY")
            assert loaded == count, f"{loaded} of {count} models loaded at start-up"
            lay_out(root, "probe", model_file)
            times = time_loads(mlserver.address, "probe", repeat)
    return {
        "loaded": count,
        "startup_s": startup,
        "load_median_s": statistics.median(times),
        "load_min_s": min(times),
        "load_max_s": max(times),
    }


def bench_sidecar_overhead(model_file: Path, repeat: int) -> dict[str, float]:
    """loadModel through the sidecar from a PVC, against a direct RepositoryModelLoad."""
    with tempfile.TemporaryDirectory(prefix="mlserver-bench-") as tmp:
        base = Path(tmp)
        root, config, pvc = base / "models", base / "storage-config", base / "pvc"
        for path in (root, config, pvc / "claim1" / "iris"):
            path.mkdir(parents=True)
        shutil.copy(model_file, pvc / "claim1" / "iris" / "model.joblib")
        (config / "localpvc").write_text(json.dumps({"type": "pvc", "name": "claim1"}))
        key = json.dumps({"storage_key": "localpvc", "model_type": {"name": "sklearn"}})
        with run_mlserver(root) as mlserver:
            with run_sidecar("mlserver", mlserver.grpc_port, root, config, pvc) as sidecar:
                through = []
                # The first load imports sklearn into MLServer: left out, as in time_loads.
                for i in range(repeat + 1):
                    request = pb.LoadModelRequest(
                        modelId=f"iris-{i}", modelType="sklearn", modelPath="iris", modelKey=key
                    )
                    started = time.perf_counter()
                    sidecar.stub.loadModel(request, timeout=60)
                    through.append(time.perf_counter() - started)
                    sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId=f"iris-{i}"))
            # Direct: the same model, laid out beforehand, loaded by name.
            lay_out(root, "iris-direct", pvc / "claim1" / "iris" / "model.joblib")
            direct = time_loads(mlserver.address, "iris-direct", repeat)
    through = through[1:]
    return {
        "sidecar_median_s": statistics.median(through),
        "direct_median_s": statistics.median(direct),
        "overhead_median_ms": (statistics.median(through) - statistics.median(direct)) * 1000,
    }


def plot(results: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, rows in results.items():
        counts = [r["loaded"] for r in rows]
        ax.plot(counts, [r["load_median_s"] * 1000 for r in rows], marker="o", label=name)
    ax.set_xlabel("models already loaded in MLServer")
    ax.set_ylabel("RepositoryModelLoad of one more model (ms, median)")
    ax.set_title("MLServer 1.7.1: load time as models accumulate")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 500, 2000])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_file = train_iris_model(Path(tmp) / "iris.joblib")
        results: dict[str, list[dict[str, float]]] = {}
        header = ("repository", "loaded", "start-up s", "load ms", "min", "max")
        print("{:<20} {:>7} {:>11} {:>9} {:>7} {:>7}".format(*header))
        for name, fast in REPOSITORIES.items():
            results[name] = []
            for count in args.counts:
                row = bench_repository(model_file, count, fast, args.repeat)
                results[name].append(row)
                print(
                    f"{name:<20} {count:>7} {row['startup_s']:>11.1f} "
                    f"{row['load_median_s'] * 1000:>9.1f} {row['load_min_s'] * 1000:>7.1f} "
                    f"{row['load_max_s'] * 1000:>7.1f}",
                    flush=True,
                )
        overhead = bench_sidecar_overhead(model_file, args.repeat)
    print(
        f"sidecar loadModel (PVC, layout, load): {overhead['sidecar_median_s'] * 1000:.1f} ms; "
        f"direct RepositoryModelLoad: {overhead['direct_median_s'] * 1000:.1f} ms; "
        f"overhead {overhead['overhead_median_ms']:.1f} ms (medians of {args.repeat})"
    )
    for name, rows in results.items():
        first, last = rows[0], rows[-1]
        ratio = last["load_median_s"] / first["load_median_s"]
        print(f"{name}: load at {last['loaded']} / at {first['loaded']} = {ratio:.2f}x")

    DOCS.mkdir(exist_ok=True)
    figures = {"repositories": results, "sidecar_overhead": overhead}
    (DOCS / "mlserver_repository.json").write_text(json.dumps(figures, indent=2) + "\n")
    if not args.no_plot:
        plot(results, DOCS / "mlserver_repository.png")
        print(f"plot: {DOCS / 'mlserver_repository.png'}")


if __name__ == "__main__":
    main()
