#!/bin/sh
# Copies into ROOT the smallest root filesystem that runs the app in APP_DIR: the
# venv's Python interpreter and standard library, the shared libraries that
# they and the venv's extension modules link (found with ldd), /bin/sh for the
# launchers, CA certificates and a passwd with the app user. Runs in the build
# stage of images/sidecar/Dockerfile on any Debian-like BASE_IMAGE
# (debootstrap rootfs or python:3.x-slim).
#   assemble-runtime.sh ROOT APP_DIR APP_UID    (the venv is APP_DIR/venv)
set -eu

root=$1
app=$2
app_uid=$3
venv=$app/venv

# The same path under ROOT (a symlink stays a symlink), with its parent dirs.
copy() {
    tar -C / -cf - "${1#/}" | tar -C "$root" -xf -
}
# A path and every symlink on the way to its file, each at its real directory,
# so /lib64/ld-linux-x86-64.so.2 or libz.so.1 -> libz.so.1.2.13 resolve as on the base.
copy_chain() {
    p=$(readlink -f "$(dirname "$1")")/$(basename "$1")
    while [ -L "$p" ]; do
        copy "$p"
        next=$(readlink "$p")
        case $next in /*) ;; *) next=$(dirname "$p")/$next ;; esac
        p=$(readlink -f "$(dirname "$next")")/$(basename "$next")
    done
    copy "$p"
    resolved=$p
}

mkdir -p "$root"
# Merged /usr: keep /bin, /lib, /lib64, /sbin as the same symlinks.
for dir in bin lib lib64 sbin; do
    if [ -L "/$dir" ]; then
        cp -a "/$dir" "$root/"
        mkdir -p "$root$(readlink -f "/$dir")"
    fi
done

# The interpreter, through the symlinks the venv points along.
copy_chain "$venv/bin/python"
python=$resolved

# The standard library without tests, GUI, terminal, database and packaging
# modules (and so without the libraries they link), sources only: the build
# compiles what the sidecar imports at start, the rest is compiled on use.
stdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
tar -C / -cf - \
    --exclude='__pycache__' --exclude='test' --exclude='tests' --exclude='idlelib' \
    --exclude='tkinter' --exclude='_tkinter*' --exclude='turtle*' --exclude='ensurepip' \
    --exclude='lib2to3' --exclude='pydoc_data' --exclude='config-*-linux-gnu' \
    --exclude='site-packages' --exclude='dist-packages' --exclude='distutils' \
    --exclude='venv' --exclude='sqlite3' --exclude='_sqlite3*' --exclude='curses' \
    --exclude='_curses*' --exclude='readline*' --exclude='dbm' --exclude='_dbm*' \
    --exclude='_gdbm*' --exclude='_test*' --exclude='_ctypes_test*' --exclude='_xxtest*' \
    --exclude='xxlimited*' --exclude='__phello__' \
    "${stdlib#/}" | tar -C "$root" -xf -
# Debian links sitecustomize to /etc/python3.x, which is not copied.
find "$root$stdlib" -xtype l -delete

# The app: its venv and the launchers beside it, and the launchers' shell.
copy "$app"
copy_chain /bin/sh
shell=$resolved

# Shared libraries: everything ldd resolves outside the venv (libs inside it,
# e.g. numpy.libs, came with their wheels). glibc loads libgcc_s at run time
# (thread cancellation), which ldd does not show.
libs=$(mktemp)
find "$python" "$shell" "$root$stdlib" "$root$venv" \
    -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) -print |
    while read -r elf; do
        ldd "$elf" 2>/dev/null || true
    done |
    sed -n -e 's#^.*=> \(/[^ ]*\) (0x.*$#\1#p' -e 's#^[[:space:]]*\(/[^ ]*\) (0x.*$#\1#p' |
    grep -v "^$root" | sort -u >"$libs"
gcc_s=$(ldconfig -p | sed -n 's#^.*libgcc_s\.so\.1 (libc6,x86-64) => \(.*\)$#\1#p' | head -n1)
if [ -n "$gcc_s" ]; then echo "$gcc_s" >>"$libs"; fi
while read -r lib; do
    copy_chain "$lib"
done <"$libs"
rm -f "$libs"

# /etc: the app user (uid APP_UID, group 0 so arbitrary-uid platforms can write
# the same dirs), name resolution, CA certificates, mount points for the runtime.
mkdir -p "$root/etc/ssl/certs"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\napp:x:%s:0:app:/home/app:/usr/sbin/nologin\n' \
    "$app_uid" >"$root/etc/passwd"
printf 'root:x:0:\napp:x:%s:\n' "$app_uid" >"$root/etc/group"
if [ -f /etc/nsswitch.conf ]; then cp /etc/nsswitch.conf "$root/etc/"; fi
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
: >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"
mkdir -p "$root/tmp" "$root/var/tmp" "$root/home/app" "$root/models" \
    "$root/storage-config" "$root/pvc_mounts"
chmod 1777 "$root/tmp" "$root/var/tmp"
chown "$app_uid:0" "$root/home/app" "$root/models"
chmod 0775 "$root/home/app" "$root/models"
