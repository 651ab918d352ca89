#!/usr/bin/env bash
# Builds a minimal Debian root filesystem with Python 3 as a tarball, for machines
# that cannot pull images from a registry. Needs root and debootstrap.
#   make-rootfs.sh OUT.tar [SUITE] [MIRROR]
# The mirror defaults to the first Debian mirror in the machine's apt sources.
set -euo pipefail

out=${1:?usage: make-rootfs.sh OUT.tar [SUITE] [MIRROR]}
suite=${2:-bookworm}
mirror=${3:-}
if [[ -z "$mirror" ]]; then
    mirror=$(grep -hoE '^(URIs:|deb) +[^ ]*/debian/?( |$)' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '{print $2}' | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

# python3-venv lets the build stage make a virtualenv, binutils strips its libraries;
# ca-certificates gives TLS clients a system trust store.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,binutils \
    "$suite" "$root" "$mirror"

# Keep what later package installs would add as small as the rest (as Debian's slim images do).
cat > "$root/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/{man,info,locale,lintian}/* \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* "$root"/tmp/*
# Bytecode of the system Python is rebuilt on demand; a read-only root simply skips it.
find "$root/usr/lib" -name __pycache__ -type d -prune -exec rm -rf {} +

tar --numeric-owner --xattrs -C "$root" -cf "$out.partial" .
mv "$out.partial" "$out"
du -h "$out"
