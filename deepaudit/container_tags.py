"""The metadata tags of video and audio containers, read from their own structure.

Four small readers, one per container family, each walking only the boxes, elements or
chunks that hold tags and seeking past the media data:

- ISO BMFF (MP4, MOV, M4A): ``moov/udta`` QuickTime text atoms (``©cmt``, ``©too`` ...),
  ``meta/ilst`` iTunes-style items, ``meta/keys`` + ``ilst`` (QuickTime ``mdta`` keys such as
  ``com.apple.quicktime.software``, and what ``ffmpeg -movflags use_metadata_tags`` writes),
  XMP in a ``uuid`` box or a QuickTime ``XMP_`` atom;
- Matroska/WebM (EBML): ``Info`` (Title, MuxingApp, WritingApp) and ``Tags/Tag/SimpleTag``;
- RIFF (WAV, AVI): ``LIST/INFO`` chunks (``ICMT``, ``ISFT`` ...), Broadcast WAV ``bext``,
  XMP in ``_PMX`` and ID3 in ``id3``;
- ID3 (MP3): ID3v2.2/2.3/2.4 text, ``TXXX``, ``COMM`` and ``PRIV`` frames, and ID3v1.

A container that breaks its own structure raises :class:`~deepaudit.errors.MediaError` with
one line naming the file and what is wrong; nothing here decodes media.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from deepaudit.errors import MediaError

__all__ = ["TAGGED_FORMATS", "ContainerTag", "read_container_tags"]

# our sniffed format names (deepaudit.media_formats) whose containers carry tags
TAGGED_FORMATS = frozenset({"mp4", "mov", "m4a", "mkv", "webm", "wav", "avi", "mp3"})

_MAX_BOX_BYTES = 64 << 20  # a metadata box bigger than this is not metadata
_MAX_ITEMS = 10_000
_MAX_DEPTH = 12
_XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")


@dataclass(frozen=True)
class ContainerTag:
    """One tag: where it lives (``field``, e.g. ``mp4:ilst/©cmt``), its key and its text."""

    field: str
    key: str
    value: str


class _Broken(Exception):
    """The container contradicts itself; the message says where."""


def read_container_tags(
    path: str | os.PathLike[str], fmt: str, *, data: bytes | None = None
) -> list[ContainerTag]:
    """Every tag of a ``fmt`` container (one of :data:`TAGGED_FORMATS`). ``data``: the file's
    bytes when the caller has them already."""
    p = Path(path)
    if fmt not in TAGGED_FORMATS:
        raise MediaError(p, f"no container tags in {fmt} files")
    reader = {
        "mp4": _bmff,
        "mov": _bmff,
        "m4a": _bmff,
        "mkv": _ebml,
        "webm": _ebml,
        "wav": _riff,
        "avi": _riff,
        "mp3": _mp3,
    }[fmt]
    try:
        with io.BytesIO(data) if data is not None else p.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(0)
            tags = list(reader(fh, size))
    except _Broken as exc:
        raise MediaError(p, f"broken {fmt.upper()} container: {exc}") from None
    except OSError as exc:
        raise MediaError(p, f"cannot read container tags ({exc})") from exc
    return tags[:_MAX_ITEMS]


def _read(fh: BinaryIO, n: int, what: str) -> bytes:
    if n < 0 or n > _MAX_BOX_BYTES:
        raise _Broken(f"{what} claims {n} bytes")
    data = fh.read(n)
    if len(data) != n:
        raise _Broken(f"{what} is cut short ({len(data)} of {n} bytes)")
    return data


def _text(raw: bytes, encoding: str = "utf-8") -> str:
    return raw.decode(encoding, "replace").replace("\x00", " ").strip()


# --------------------------------------------------------------------------- ISO BMFF

_BMFF_CONTAINERS = {b"moov", b"udta", b"trak", b"meta", b"ilst"}


def _boxes(fh: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, content start, content end) of the boxes between ``start`` and ``end``."""
    pos = start
    count = 0
    while pos + 8 <= end:
        count += 1
        if count > _MAX_ITEMS:
            raise _Broken("too many boxes")
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            raise _Broken(f"box header at byte {pos} is cut short")
        size, kind = struct.unpack(">I4s", head)
        body = pos + 8
        if size == 1:
            large = fh.read(8)
            if len(large) < 8:
                raise _Broken(f"box {kind!r} at byte {pos} has a cut 64-bit size")
            size = struct.unpack(">Q", large)[0]
            body += 8
        elif size == 0:
            size = end - pos
        if size < body - pos or pos + size > end:
            raise _Broken(f"box {kind!r} at byte {pos} claims {size} bytes, beyond its parent")
        yield kind, body, pos + size
        pos += size


def _bmff(fh: BinaryIO, size: int) -> Iterator[ContainerTag]:
    yield from _bmff_level(fh, 0, size, "", 0, [])


def _bmff_level(
    fh: BinaryIO, start: int, end: int, where: str, depth: int, keys: list[str]
) -> Iterator[ContainerTag]:
    if depth > _MAX_DEPTH:
        raise _Broken("boxes nested too deep")
    for kind, body, stop in _boxes(fh, start, end):
        name = kind.decode("latin-1")
        here = f"{where}/{name}".lstrip("/")
        if kind == b"uuid" and stop - body >= 16:
            fh.seek(body)
            if fh.read(16) == _XMP_UUID:
                yield ContainerTag("mp4:uuid-xmp", "XMP", _text(_read(fh, stop - body - 16, here)))
        elif kind == b"XMP_":
            fh.seek(body)
            yield ContainerTag(f"mp4:{here}", "XMP", _text(_read(fh, stop - body, here)))
        elif kind == b"meta":
            fh.seek(body)
            peek = fh.read(8)
            # ISO's meta is a full box (4 bytes of version/flags); QuickTime's is not
            inner = body if peek[4:8] == b"hdlr" else body + 4
            found: list[str] = []
            for k, b, s in _boxes(fh, inner, stop):
                if k == b"keys":
                    fh.seek(b)
                    found = _mdta_keys(_read(fh, s - b, f"{here}/keys"))
            yield from _bmff_level(fh, inner, stop, here, depth + 1, found)
        elif kind == b"ilst":
            yield from _ilst(fh, body, stop, here, keys)
        elif kind in _BMFF_CONTAINERS:
            yield from _bmff_level(fh, body, stop, here, depth + 1, keys)
        elif where.endswith("udta") and kind[:1] == b"\xa9":
            fh.seek(body)
            yield from _qt_text(_read(fh, stop - body, here), f"mp4:{here}", name)


def _mdta_keys(raw: bytes) -> list[str]:
    """The key names of a ``keys`` box (1-based in ``ilst``)."""
    if len(raw) < 8:
        raise _Broken("keys box is cut short")
    count = struct.unpack(">I", raw[4:8])[0]
    out, pos = [], 8
    for _ in range(min(count, _MAX_ITEMS)):
        if pos + 8 > len(raw):
            raise _Broken("keys box lists more keys than it holds")
        size = struct.unpack(">I", raw[pos : pos + 4])[0]
        if size < 8 or pos + size > len(raw):
            raise _Broken(f"key {len(out) + 1} claims {size} bytes")
        out.append(_text(raw[pos + 8 : pos + size]))
        pos += size
    return out


def _ilst(
    fh: BinaryIO, start: int, end: int, where: str, keys: list[str]
) -> Iterator[ContainerTag]:
    for kind, body, stop in _boxes(fh, start, end):
        index = struct.unpack(">I", kind)[0]
        key = keys[index - 1] if keys and 1 <= index <= len(keys) else kind.decode("latin-1")
        for dkind, dbody, dstop in _boxes(fh, body, stop):
            if dkind != b"data" or dstop - dbody < 8:
                continue
            fh.seek(dbody)
            raw = _read(fh, dstop - dbody, f"{where}/{key}/data")
            type_code = struct.unpack(">I", raw[:4])[0] & 0xFFFFFF
            if type_code in (1, 2, 4, 5):  # UTF-8, UTF-16, (S)JIS-free text variants
                enc = "utf-16-be" if type_code in (2, 5) else "utf-8"
                yield ContainerTag(f"mp4:{where}/{key}", key, _text(raw[8:], enc))


def _qt_text(raw: bytes, field: str, key: str) -> Iterator[ContainerTag]:
    """QuickTime user-data text: [length][language][text], repeated per language."""
    pos = 0
    while pos + 4 <= len(raw):
        n = struct.unpack(">H", raw[pos : pos + 2])[0]
        if pos + 4 + n > len(raw):
            raise _Broken(f"{field} text claims {n} bytes")
        yield ContainerTag(field, key, _text(raw[pos + 4 : pos + 4 + n]))
        pos += 4 + n


# --------------------------------------------------------------------------- EBML

_SEGMENT, _INFO, _TAGS, _CLUSTER = 0x18538067, 0x1549A966, 0x1254C367, 0x1F43B675
_INFO_TEXT = {0x7BA9: "Title", 0x4D80: "MuxingApp", 0x5741: "WritingApp"}
_TAG, _SIMPLE_TAG, _TAG_NAME, _TAG_STRING = 0x7373, 0x67C8, 0x45A3, 0x4487


def _vint(fh: BinaryIO, keep_marker: bool) -> tuple[int, int] | None:
    """(value, length) of an EBML variable-length integer; None at the end of the file.
    An all-ones size (unknown) comes back as -1."""
    first = fh.read(1)
    if not first:
        return None
    b = first[0]
    length = 1
    while length <= 8 and not b & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        raise _Broken(f"invalid EBML number at byte {fh.tell() - 1}")
    rest = fh.read(length - 1)
    if len(rest) != length - 1:
        raise _Broken("EBML number cut short")
    value = b if keep_marker else b & (0xFF >> length)
    for r in rest:
        value = (value << 8) | r
    if not keep_marker and value == (1 << (7 * length)) - 1:
        return -1, length
    return value, length


def _elements(fh: BinaryIO, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, content start, content end) of the EBML elements between ``start`` and ``end``;
    an element of unknown size runs to ``end``."""
    pos = start
    count = 0
    while pos < end:
        count += 1
        if count > _MAX_ITEMS * 10:
            raise _Broken("too many elements")
        fh.seek(pos)
        ident = _vint(fh, keep_marker=True)
        if ident is None:
            return
        size = _vint(fh, keep_marker=False)
        if size is None:
            raise _Broken(f"element {ident[0]:#x} at byte {pos} has no size")
        body = fh.tell()
        stop = end if size[0] < 0 else body + size[0]
        if stop > end:
            raise _Broken(f"element {ident[0]:#x} at byte {pos} runs past its parent")
        yield ident[0], body, stop
        if size[0] < 0 and ident[0] != _SEGMENT:
            return  # an unknown-size cluster (a live stream): no tags follow that we can find
        pos = stop


def _ebml(fh: BinaryIO, size: int) -> Iterator[ContainerTag]:
    for ident, body, stop in _elements(fh, 0, size):
        if ident != _SEGMENT:
            continue
        for child, cbody, cstop in _elements(fh, body, stop):
            if child == _INFO:
                for leaf, lbody, lstop in _elements(fh, cbody, cstop):
                    if leaf in _INFO_TEXT:
                        fh.seek(lbody)
                        value = _text(_read(fh, lstop - lbody, _INFO_TEXT[leaf]))
                        name = _INFO_TEXT[leaf]
                        yield ContainerTag(f"mkv:Info/{name}", name, value)
            elif child == _TAGS:
                for tag, tbody, tstop in _elements(fh, cbody, cstop):
                    if tag == _TAG:
                        yield from _simple_tags(fh, tbody, tstop, 0)


def _simple_tags(fh: BinaryIO, start: int, end: int, depth: int) -> Iterator[ContainerTag]:
    if depth > _MAX_DEPTH:
        raise _Broken("tags nested too deep")
    for ident, body, stop in _elements(fh, start, end):
        if ident != _SIMPLE_TAG:
            continue
        name = value = None
        for leaf, lbody, lstop in _elements(fh, body, stop):
            if leaf in (_TAG_NAME, _TAG_STRING):
                fh.seek(lbody)
                text = _text(_read(fh, lstop - lbody, "SimpleTag"))
                name, value = (text, value) if leaf == _TAG_NAME else (name, text)
        if name:
            yield ContainerTag(f"mkv:Tags/{name}", name, value or "")
        yield from _simple_tags(fh, body, stop, depth + 1)


# --------------------------------------------------------------------------- RIFF

_BEXT_FIELDS = (("Description", 0, 256), ("Originator", 256, 32), ("OriginatorReference", 288, 32))


def _riff(fh: BinaryIO, size: int) -> Iterator[ContainerTag]:
    head = fh.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64"):
        raise _Broken("no RIFF header")
    end = min(size, 8 + struct.unpack("<I", head[4:8])[0]) if head[:4] == b"RIFF" else size
    yield from _riff_chunks(fh, 12, end, 0)


def _riff_chunks(fh: BinaryIO, start: int, end: int, depth: int) -> Iterator[ContainerTag]:
    if depth > _MAX_DEPTH:
        raise _Broken("lists nested too deep")
    pos = start
    for _ in range(_MAX_ITEMS):
        if pos + 8 > end:
            return
        fh.seek(pos)
        cid, n = struct.unpack("<4sI", fh.read(8))
        body = pos + 8
        if body + n > end:
            if cid in (b"data", b"movi"):  # a writer that never patched the size: no tags after
                return
            raise _Broken(f"chunk {cid!r} at byte {pos} claims {n} bytes, beyond the file")
        if cid == b"LIST" and n >= 4:
            form = fh.read(4)
            if form == b"INFO":
                yield from _info_list(_read(fh, n - 4, "LIST/INFO"))
            elif form != b"movi":
                yield from _riff_chunks(fh, body + 4, body + n, depth + 1)
        elif cid == b"bext":
            raw = _read(fh, n, "bext")
            for key, at, width in _BEXT_FIELDS:
                if value := _text(raw[at : at + width], "latin-1"):
                    yield ContainerTag(f"wav:bext/{key}", key, value)
            if len(raw) > 602 and (history := _text(raw[602:], "latin-1")):
                yield ContainerTag("wav:bext/CodingHistory", "CodingHistory", history)
        elif cid == b"_PMX":
            yield ContainerTag("wav:_PMX", "XMP", _text(_read(fh, n, "_PMX")))
        elif cid in (b"id3 ", b"ID3 "):
            yield from _id3v2(_read(fh, n, "id3"), "wav:id3")
        pos = body + n + (n & 1)  # chunks are padded to an even length


def _info_list(raw: bytes) -> Iterator[ContainerTag]:
    pos = 0
    while pos + 8 <= len(raw):
        cid, n = struct.unpack("<4sI", raw[pos : pos + 8])
        if pos + 8 + n > len(raw):
            raise _Broken(f"INFO entry {cid!r} claims {n} bytes")
        key = cid.decode("latin-1")
        yield ContainerTag(f"riff:INFO/{key}", key, _text(raw[pos + 8 : pos + 8 + n]))
        pos += 8 + n + (n & 1)


# --------------------------------------------------------------------------- ID3

_ID3_ENCODINGS = {0: "latin-1", 1: "utf-16", 2: "utf-16-be", 3: "utf-8"}


def _mp3(fh: BinaryIO, size: int) -> Iterator[ContainerTag]:
    head = fh.read(10)
    if head[:3] == b"ID3" and len(head) == 10:
        n = _syncsafe(head[6:10])
        fh.seek(0)
        yield from _id3v2(_read(fh, 10 + n, "ID3v2 tag"), "id3")
    if size >= 128:
        fh.seek(size - 128)
        tail = fh.read(128)
        if tail[:3] == b"TAG":
            for key, a, b in (("Title", 3, 33), ("Artist", 33, 63), ("Comment", 97, 127)):
                if value := _text(tail[a:b], "latin-1"):
                    yield ContainerTag(f"id3v1:{key}", key, value)


def _syncsafe(raw: bytes) -> int:
    if any(b & 0x80 for b in raw):
        raise _Broken("ID3 size is not sync-safe")
    return (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]


def _id3v2(tag: bytes, where: str) -> Iterator[ContainerTag]:
    if len(tag) < 10 or tag[:3] != b"ID3":
        raise _Broken("no ID3v2 header")
    version, flags = tag[3], tag[5]
    if version not in (2, 3, 4):
        raise _Broken(f"unknown ID3v2 version 2.{version}")
    body = tag[10 : 10 + _syncsafe(tag[6:10])]
    if flags & 0x80 and version < 4:  # whole-tag unsynchronisation
        body = body.replace(b"\xff\x00", b"\xff")
    pos = 0
    if flags & 0x40 and version >= 3 and len(body) >= 4:  # extended header
        ext = _syncsafe(body[:4]) if version == 4 else 4 + struct.unpack(">I", body[:4])[0]
        pos = ext
    id_len, head_len = (3, 6) if version == 2 else (4, 10)
    for _ in range(_MAX_ITEMS):
        if pos + head_len > len(body) or body[pos] == 0:
            return  # padding
        fid = body[pos : pos + id_len].decode("latin-1")
        raw_size = body[pos + id_len : pos + id_len + (3 if version == 2 else 4)]
        if version == 2:
            n = int.from_bytes(raw_size, "big")
        elif version == 4:
            n = _syncsafe(raw_size)
        else:
            n = struct.unpack(">I", raw_size)[0]
        data = body[pos + head_len : pos + head_len + n]
        if len(data) != n:
            raise _Broken(f"ID3 frame {fid} claims {n} bytes")
        yield from _id3_frame(fid, data, where)
        pos += head_len + n


def _id3_frame(fid: str, data: bytes, where: str) -> Iterator[ContainerTag]:
    if not data:
        return
    if fid.startswith("T") or fid == "COMM" or fid == "COM":
        enc = _ID3_ENCODINGS.get(data[0], "latin-1")
        text = data[1:]
        if fid in ("COMM", "COM"):
            text = text[3:]  # the language
        parts = _split_id3(text, enc)
        if fid in ("TXXX", "TXX", "COMM", "COM") and parts:
            desc, values = parts[0], parts[1:]
            key = f"{fid}:{desc}" if desc else fid
            for v in values or [""]:
                yield ContainerTag(f"{where}:{key}", desc or fid, v)
        else:
            for v in parts:
                yield ContainerTag(f"{where}:{fid}", fid, v)
    elif fid == "PRIV" and b"\x00" in data:
        owner, _, payload = data.partition(b"\x00")
        if b"<x:xmpmeta" in payload or owner.upper().startswith(b"XMP"):
            yield ContainerTag(f"{where}:PRIV:{_text(owner)}", "XMP", _text(payload))


def _split_id3(raw: bytes, enc: str) -> list[str]:
    sep = b"\x00\x00" if enc.startswith("utf-16") else b"\x00"
    if enc.startswith("utf-16"):
        parts, pos = [], 0
        while pos < len(raw):  # the separator must fall on a 2-byte boundary
            nxt = raw.find(sep, pos)
            while nxt != -1 and (nxt - pos) % 2:
                nxt = raw.find(sep, nxt + 1)
            stop = len(raw) if nxt == -1 else nxt
            parts.append(raw[pos:stop])
            pos = stop + 2
        chunks = parts
    else:
        chunks = raw.split(sep)
    out = [c.decode(enc, "replace").strip().lstrip("\ufeff") for c in chunks]
    while out and not out[-1]:
        out.pop()
    return out
