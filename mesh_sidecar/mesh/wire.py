"""Writes a model id into an encoded protobuf request without decoding the message.

The coordinator routes requests of any service a runtime declares, so it cannot
know their message types. ModelMesh's `idInjectionPath` is a path of field
numbers: every number but the last names an embedded message field, the last
a string field. Only the tags and lengths on that path are parsed; every
other byte is copied through untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh_sidecar.errors import InvalidRequest

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10
_PAST_END = "request is not a valid protobuf message (a field runs past the end)"


class WireFormatError(InvalidRequest):
    """The request bytes are not a protobuf message the id can be written into."""


def encode_varint(value: int) -> bytes:
    """Base-128 varint encoding of a non-negative integer."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
        if pos >= end:
            raise WireFormatError("request is not a valid protobuf message (truncated varint)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
    raise WireFormatError("request is not a valid protobuf message (varint too long)")


def _skip_value(buf: memoryview, pos: int, end: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        _, pos = _read_varint(buf, pos, end)
    elif wire_type == _FIXED64:
        pos += 8
    elif wire_type == _FIXED32:
        pos += 4
    elif wire_type == _LENGTH_DELIMITED:
        length, pos = _read_varint(buf, pos, end)
        pos += length
    else:
        # Groups (3, 4) are deprecated and never used by the services we route.
        raise WireFormatError(f"request uses unsupported protobuf wire type {wire_type}")
    if pos > end:
        raise WireFormatError(_PAST_END)
    return pos


def _occurrences(buf: memoryview, start: int, end: int, number: int) -> list[tuple[int, int, int]]:
    """(field start, content start, content end) of each occurrence of field `number`."""
    found: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _read_varint(buf, pos, end)
        field_number, wire_type = tag >> 3, tag & 7
        if field_number == 0:
            raise WireFormatError("request is not a valid protobuf message (field number 0)")
        if field_number != number:
            pos = _skip_value(buf, pos, end, wire_type)
            continue
        if wire_type != _LENGTH_DELIMITED:
            raise WireFormatError(
                f"field {number} on the id injection path is not a string or message field"
            )
        length, pos = _read_varint(buf, pos, end)
        if pos + length > end:
            raise WireFormatError(
                "request is not a valid protobuf message (field runs past the end)"
            )
        found.append((field_start, pos, pos + length))
        pos += length
    return found


def _length_delimited(number: int, content: bytes) -> bytes:
    return encode_varint((number << 3) | _LENGTH_DELIMITED) + encode_varint(len(content)) + content


def _splice(buf: memoryview, start: int, end: int, path: Sequence[int], value: bytes) -> bytes:
    number = path[0]
    found = _occurrences(buf, start, end, number)
    if len(path) == 1:
        # Protobuf parsers keep the last value of a repeated scalar, so every
        # occurrence goes: the id is written once, where the first one stood.
        new_field = _length_delimited(number, value)
        if not found:
            return bytes(buf[start:end]) + new_field
        parts = [bytes(buf[start : found[0][0]]), new_field]
        for (_, _, this_end), (next_start, _, _) in zip(
            found, [*found[1:], (end, 0, 0)], strict=True
        ):
            parts.append(bytes(buf[this_end:next_start]))
        return b"".join(parts)
    if not found:
        inner = _splice(memoryview(b""), 0, 0, path[1:], value)
        return bytes(buf[start:end]) + _length_delimited(number, inner)
    # Like ModelMesh, descend into the first occurrence of each embedded message.
    field_start, content_start, content_end = found[0]
    inner = _splice(buf, content_start, content_end, path[1:], value)
    return (
        bytes(buf[start:field_start])
        + _length_delimited(number, inner)
        + bytes(buf[content_end:end])
    )


def inject_model_id(message: bytes, path: Sequence[int], model_id: str) -> bytes:
    """`message` with the string field at `path` set to `model_id`.

    Raises WireFormatError (INVALID_ARGUMENT) when the bytes are not a protobuf
    message or a field on the path has the wrong wire type.
    """
    if not path or any(number <= 0 for number in path):
        raise ValueError(f"invalid id injection path {list(path)}")
    view = memoryview(message)
    return _splice(view, 0, len(view), path, model_id.encode())
