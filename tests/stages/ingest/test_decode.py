import multiprocessing
import os

import pytest

from stages.ingest.decode import Unreadable, decode, looks_binary, read_text


def _read_as_nobody(path, queue):
    os.setgid(65534)
    os.setuid(65534)
    try:
        read_text(path, 1 << 20, 1000, ["utf-8"])
        queue.put("read")
    except Unreadable as exc:
        queue.put(exc.reason)


def test_permission_denied_is_a_reason(tmp_path):
    path = tmp_path / "private.txt"
    path.write_text("not for everyone\n")
    os.chmod(path, 0)
    os.chmod(tmp_path, 0o755)
    if os.geteuid() != 0:
        with pytest.raises(Unreadable) as exc:
            read_text(str(path), 1 << 20, 1000, ["utf-8"])
        assert exc.value.reason == "unreadable:permission_denied"
        return
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_read_as_nobody, args=(str(path), queue))
    child.start()
    child.join(30)
    assert queue.get(timeout=5) == "unreadable:permission_denied"


def test_decode_fallbacks_and_binary():
    assert decode("héllo".encode(), ["utf-8"]) == ("héllo", "utf-8")
    assert decode("\ufeffbom".encode("utf-8"), ["utf-8"])[0] == "bom"
    assert decode("wide".encode("utf-16"), ["utf-8"]) == ("wide", "utf-16")
    assert decode("caf\xe9".encode("latin-1"), ["utf-8", "cp1252"]) == ("café", "cp1252")
    with pytest.raises(Unreadable, match="byte 3"):
        decode("caf\xe9".encode("latin-1"), ["utf-8"])
    assert looks_binary(b"\x7fELF\x00\x01") and not looks_binary(b"plain text\n\ttabs\r\n")
