"""`mesh-sidecar layout`: show the tree a runtime would build for a model, without loading it.

Runs only the runtime's pure layout planner, so users see what the model server
will get before they deploy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesh_sidecar.errors import SidecarError
from mesh_sidecar.pullers.base import tree_size
from mesh_sidecar.runtimes.base import ModelFiles, RuntimeSettings
from mesh_sidecar.runtimes.layout import render_layout
from mesh_sidecar.runtimes.registry import RUNTIMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", required=True, help="runtime adapter name")
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--model-type", default="", help="e.g. onnx, pytorch, sklearn")
    parser.add_argument("--model-type-version", default=None)
    parser.add_argument("--schema", type=Path, default=None, help="a schema JSON file")
    parser.add_argument("source", type=Path, help="the pulled model: a dir or a file")
    parser.add_argument("target_root", type=Path, help="ROOT_MODEL_DIR of the sidecar")


def run(args: argparse.Namespace) -> int:
    try:
        runtime = RUNTIMES.get(args.runtime)(
            RuntimeSettings(address="", root_model_dir=args.target_root)
        )
        source = args.source.resolve()
        if not source.exists():
            print(f"mesh-sidecar layout: {args.source} does not exist", file=sys.stderr)
            return 1
        model = ModelFiles(
            model_id=args.model_id,
            model_type=args.model_type,
            model_type_version=args.model_type_version,
            path=source,
            disk_size_bytes=tree_size(source)[1],
            schema_path=args.schema.resolve() if args.schema else None,
            request_model_type=args.model_type,
        )
        plan = runtime.plan_layout(model)
    except SidecarError as exc:
        print(f"mesh-sidecar layout: {exc.code.name}: {exc}", file=sys.stderr)
        return 1
    target = runtime.repository_path(args.model_id)
    if plan is None or target is None:
        print(f"runtime {args.runtime!r} loads pulled files as they are: {source}")
        return 0
    print(render_layout(plan, str(target)))
    return 0
