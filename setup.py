"""Generates the mmesh gRPC stubs from proto/ at build time (never committed)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
OUT = ROOT / "mesh_sidecar"


def generate_stubs() -> None:
    from grpc_tools import protoc  # build requirement

    protos = sorted(str(p) for p in (ROOT / "proto").glob("mmesh/*.proto"))
    args = ["protoc", f"-I{ROOT / 'proto'}", f"--python_out={OUT}", f"--pyi_out={OUT}",
            f"--grpc_python_out={OUT}", *protos]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on proto/mmesh")
    # protoc writes absolute imports ("from mmesh import ..."); ours live in a subpackage.
    for stub in (OUT / "mmesh").glob("*_grpc.py"):
        stub.write_text(stub.read_text().replace("from mmesh import", "from . import"))
    (OUT / "mmesh" / "__init__.py").write_text('"""Generated mmesh stubs."""\n')


class BuildWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        # In a fresh checkout the package list was found before the stubs existed.
        if self.packages is not None and "mesh_sidecar.mmesh" not in self.packages:
            self.packages.append("mesh_sidecar.mmesh")
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
