"""`mesh-sidecar runtimes`: the runtimes this install knows and where each comes from."""

from __future__ import annotations

import argparse

from mesh_sidecar.runtimes.registry import RUNTIMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    specs = RUNTIMES.specs()
    width = max(len(name) for name in specs)
    for name, spec in sorted(specs.items()):
        print(f"{name:<{width}}  {spec.origin:<20}  {spec.target}")
    return 0
