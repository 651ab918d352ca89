"""Imports every plugin of the installed sidecar, as the image's user would.

Run in the assembled root filesystem at build time: a shared library that did
not make it into the image, or one broken by stripping, fails the build here
rather than at the first load in a cluster. A plugin whose optional
dependencies are not installed (an image built with fewer EXTRAS) is reported
and skipped. With --runtimes-only it imports the server and the runtimes
alone: what every start of the sidecar imports.
"""

import importlib
import importlib.util
import sys

import numpy  # noqa: F401
import tritonclient.grpc.aio  # noqa: F401

import mesh_sidecar.adapter.serve  # noqa: F401
from mesh_sidecar.pullers.registry import PULLERS
from mesh_sidecar.runtimes.registry import RUNTIMES

failed = []
for registry in (RUNTIMES,) if "--runtimes-only" in sys.argv else (PULLERS, RUNTIMES):
    for name, spec in sorted(registry.specs().items()):
        module = spec.target.partition(":")[0]
        try:
            importlib.import_module(module)
            print(f"{registry.kind} {name}: ok")
        except ImportError as exc:
            top = (exc.name or "").partition(".")[0]
            if top and importlib.util.find_spec(top) is None:
                print(f"{registry.kind} {name}: not installed ({exc.name} missing)")
            else:
                failed.append(f"{registry.kind} {name}: {exc!r}")
for line in failed:
    print(line, file=sys.stderr)
sys.exit(1 if failed else 0)
