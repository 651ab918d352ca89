"""Running the sidecar image with podman, as ModelMesh Serving runs its containers.

Used by the image tests and benchmarks: foreground `podman run` commands (start
them with `processes.start_process`), with the controller's security settings.
Podman runs without a daemon or systemd: runc, cgroupfs, events to a file.
"""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Mapping, Sequence

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def podman(*args: str, timeout: float = 120) -> str:
    """Run one podman command; its stdout, or an error with its stderr."""
    done = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip()


def ulimit_flags() -> list[str]:
    """Limits no higher than this process's: podman's defaults may exceed what a host allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = min(soft, hard, 65536)
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=4096:4096"]


def run_command(
    name: str,
    image: str,
    cmd: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    mounts: Sequence[str] = (),
) -> list[str]:
    """A foreground `podman run` of `image` as a pod's container: the host's network
    (containers of a pod share one), a read-only root filesystem, every capability
    dropped, removed when it exits. `mounts` are `HOST:CONTAINER[:ro]`."""
    flags = ["run", "--rm", "--name", name, "--network", "host", "--read-only"]
    flags += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", *ulimit_flags()]
    for key, value in (env or {}).items():
        flags += ["--env", f"{key}={value}"]
    for mount in mounts:
        flags += ["--volume", mount]
    return [*PODMAN, *flags, image, *cmd]


def remove(name: str) -> None:
    """Remove a container whether or not it still runs or exists."""
    subprocess.run([*PODMAN, "rm", "--force", "--ignore", name], capture_output=True, check=False)
