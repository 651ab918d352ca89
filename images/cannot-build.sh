#!/usr/bin/env bash
# Prints why container images cannot be built and run here, and exits 0; exits 1
# (printing nothing) when they can. `make image-test` skips on the first case.
if [[ $(id -u) -ne 0 ]]; then
    echo "building images needs root (buildah and podman run rootful, without a daemon)"
    exit 0
fi
if ! command -v buildah >/dev/null || ! command -v podman >/dev/null; then
    if ! command -v apt-get >/dev/null; then
        echo "buildah and podman are missing and there is no apt-get to install them"
        exit 0
    fi
    if ! make --no-print-directory -s image-tools >/dev/null 2>&1; then
        echo "installing buildah and podman with apt-get failed"
        exit 0
    fi
fi
if ! out=$(buildah info 2>&1); then
    echo "buildah cannot run here: $(tail -n1 <<<"$out")"
    exit 0
fi
exit 1
