"""Archives for tests and the hostile-input corpus: good ones, and hostile ones
of every kind the sidecar refuses."""

from __future__ import annotations

import io
import stat
import tarfile
import warnings
import zipfile


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    # Hostile samples repeat names on purpose: zipfile's warning about it is expected.
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


GOOD_MEMBERS = [
    ("./", b""),
    ("config.pbtxt", b"name: 'm'"),
    ("1/model.onnx", b"\x00" * 1000),
    ("empty", b""),
]


def good_tar(mode: str = "w:gz") -> bytes:
    members: list[tarfile.TarInfo | tuple[str, bytes]] = []
    root = tarfile.TarInfo("./")
    root.type = tarfile.DIRTYPE
    members.append(root)
    members += [m for m in GOOD_MEMBERS if m[0] != "./"]
    return tar_bytes(members, mode)


def good_zip() -> bytes:
    return zip_bytes([m for m in GOOD_MEMBERS if m[0] != "./"])


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def hostile_archives() -> dict[str, bytes]:
    """name (with its suffix) -> archive bytes; each one must be refused."""
    symlink_zip = io.BytesIO()
    with zipfile.ZipFile(symlink_zip, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return {
        "traversal.tar.gz": tar_bytes([("ok.txt", b"ok"), ("../escape.txt", b"evil")]),
        "absolute.tar": tar_bytes([("/tmp/absolute-escape.txt", b"evil")], "w"),
        "symlink.tar.bz2": tar_bytes([_special("link", tarfile.SYMTYPE, "/etc/passwd")], "w:bz2"),
        "hardlink.tar.xz": tar_bytes([_special("hard", tarfile.LNKTYPE, "/etc/passwd")], "w:xz"),
        "device.tgz": tar_bytes([_special("dev", tarfile.CHRTYPE)]),
        "fifo.tar.gz": tar_bytes([_special("fifo", tarfile.FIFOTYPE)]),
        "traversal.zip": zip_bytes([("../escape.txt", b"evil")]),
        "absolute.zip": zip_bytes([("/tmp/absolute-escape.txt", b"evil")]),
        "symlink.zip": symlink_zip.getvalue(),
    }


def zip_bomb(expanded: int) -> bytes:
    """A small zip of one member that expands to `expanded` zero bytes."""
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("bomb.bin", "w", force_zip64=True) as member,
    ):
        chunk = b"\x00" * (1 << 20)
        for _ in range(expanded // len(chunk)):
            member.write(chunk)
    return buf.getvalue()


def tar_bomb(expanded: int) -> bytes:
    """A gzip'd tar of one member of `expanded` zero bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("bomb.bin")
        info.size = expanded

        class Zeros(io.RawIOBase):
            def __init__(self) -> None:
                self.left = expanded

            def readable(self) -> bool:
                return True

            def readinto(self, b: bytearray) -> int:  # type: ignore[override]
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(Zeros()))  # type: ignore[type-var]
    return buf.getvalue()
