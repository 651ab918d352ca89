"""`mesh-sidecar` command line: one subcommand per module, imported only when used.

Each command module defines `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("mesh_sidecar.adapter.serve", "run the sidecar (mmesh.ModelRuntime server)"),
    "runtimes": (
        "mesh_sidecar.adapter.list_runtimes",
        "list the runtimes and where they come from",
    ),
    "pull": ("mesh_sidecar.pullers.cli", "pull a model from storage into a local dir"),
    "layout": ("mesh_sidecar.runtimes.layout_cli", "show how a runtime would lay out a model"),
    "simple-string-server": (
        "mesh_sidecar.simple_string.server",
        "run the simple-string model server (KServe V2 + mmesh.ModelRuntime)",
    ),
    "mesh": ("mesh_sidecar.mesh.cli", "run the embedded mesh coordinator"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="mesh-sidecar", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the chosen command's module is imported (start-up time and memory).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(cmd)
            cmd.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
