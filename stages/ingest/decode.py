"""Reading one input file into text, with every way that can fail named as a reason."""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
import stat
import zlib
from dataclasses import dataclass

COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
CONTROL = bytes(range(0, 9)) + b"\x0b\x0c" + bytes(range(14, 32)) + b"\x7f"


POLICY_REASONS = ("too_large", "empty")  # readable, but refused by a cap: no `unreadable:` prefix


class Unreadable(Exception):
    """An input that cannot be read; `reason` is machine-readable, the message says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason if reason in POLICY_REASONS else f"unreadable:{reason}"


@dataclass
class Decoded:
    text: str
    encoding: str
    compressed: bool
    raw_bytes: int
    truncated_lines: int = 0


def _os_reason(exc: OSError) -> str:
    return {errno.ELOOP: "symlink_loop", errno.EACCES: "permission_denied", errno.EPERM: "permission_denied",
            errno.ENOENT: "not_found", errno.EISDIR: "is_a_directory"}.get(exc.errno, "io_error")


def read_bytes(path: str, max_bytes: int) -> tuple[bytes, bool]:
    """The file's bytes, decompressed if its name says so, refusing more than `max_bytes`."""
    try:
        st = os.stat(path)
    except OSError as exc:
        reason = _os_reason(exc)
        if reason == "not_found" and os.path.islink(path):
            reason = "broken_symlink"
        raise Unreadable(reason, f"{exc.strerror}: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise Unreadable("not_regular_file", f"not a regular file (mode {stat.filemode(st.st_mode)}): {path}")
    ext = os.path.splitext(path)[1].lower()
    opener = COMPRESSED.get(ext)
    try:
        if opener is None:
            if st.st_size > max_bytes:
                raise Unreadable("too_large", f"{st.st_size} bytes, over the cap of {max_bytes}")
            with open(path, "rb") as f:
                return f.read(max_bytes + 1), False
        with opener(path, "rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise Unreadable("too_large", f"decompresses to over the cap of {max_bytes} bytes")
        return data, True
    except Unreadable:
        raise
    except EOFError as exc:
        raise Unreadable(f"truncated_{ext[1:]}", f"compressed stream ends early: {exc}") from None
    except (gzip.BadGzipFile, zlib.error, OSError, lzma.LZMAError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise Unreadable(_os_reason(exc), f"{exc.strerror}: {path}") from None
        raise Unreadable(f"corrupt_{ext[1:] or 'file'}", str(exc)) from None


def looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    return bool(head) and sum(head.count(c) for c in CONTROL) / len(head) > 0.1


def decode(data: bytes, encodings: list[str]) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise Unreadable("undecodable", f"bad UTF-16: {exc}") from None
    if looks_binary(data):
        raise Unreadable("binary", "NUL or control bytes: a binary file")
    error = None
    for encoding in encodings:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            error = error or exc
        except LookupError:
            raise Unreadable("undecodable", f"unknown encoding {encoding!r}") from None
    raise Unreadable("undecodable", f"not {'/'.join(encodings)}: byte {error.start}: {error.reason}")


def cap_lines(text: str, max_chars: int) -> tuple[str, int]:
    """Truncate lines longer than `max_chars`; the count goes to the document's meta."""
    if len(text) <= max_chars or max(map(len, text.split("\n"))) <= max_chars:
        return text, 0
    lines = text.split("\n")
    cut = sum(len(line) > max_chars for line in lines)
    return "\n".join(line[:max_chars] for line in lines), cut


def read_text(path: str, max_bytes: int, max_line_chars: int, encodings: list[str]) -> Decoded:
    data, compressed = read_bytes(path, max_bytes)
    if not data:
        raise Unreadable("empty", "0 bytes")
    text, encoding = decode(data, encodings)
    text, cut = cap_lines(text, max_line_chars)
    return Decoded(text, encoding, compressed, len(data), cut)
