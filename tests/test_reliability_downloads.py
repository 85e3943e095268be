"""Broken downloads: a truncated or corrupted transfer is detected and never used.

tests/test_data_download.py covers a wrong checksum, a damaged cached copy, one retry
after HTTP 503 and the mirror; this file adds transfers that break in the middle.
"""

from __future__ import annotations

import hashlib
import http.server

import pytest
from conftest import serve_http

from nmt.data.download import fetch
from nmt.errors import DataError

PAYLOAD = b"".join(b"line %d of a corpus file\n" % i for i in range(4000))  # ~100 kB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
REL = "corpus/file.txt"


@pytest.fixture()
def server():
    """Serves PAYLOAD; ``plan`` lists what the next responses do: ``cut`` (announce the
    full length, send half, hang up), ``corrupt`` (flip bytes, same length) or ``ok``."""
    state = {"requests": 0, "plan": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            state["requests"] += 1
            mode = state["plan"].pop(0) if state["plan"] else "ok"
            body = PAYLOAD
            if mode == "corrupt":
                body = bytearray(PAYLOAD)
                body[len(body) // 3] ^= 0x20
                body = bytes(body)
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    with serve_http(Handler) as url:
        yield f"{url}/{REL}", state


pytestmark = pytest.mark.usefixtures("offline_downloads")


def _leftovers(cache):
    folder = cache / "downloads" / "corpus"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_transfer_cut_in_the_middle_is_retried(server, tmp_path):
    url, state = server
    state["plan"] = ["cut"]
    path = fetch(REL, url, SHA, tmp_path / "cache")
    assert path.read_bytes() == PAYLOAD and state["requests"] == 2
    assert _leftovers(tmp_path / "cache") == ["file.txt"]


def test_transfer_cut_every_time_is_reported_and_nothing_is_kept(server, tmp_path):
    url, state = server
    state["plan"] = ["cut", "cut"]
    with pytest.raises(
        DataError,
        match=r"could not download .* \(transfer cut after \d+ of \d+ bytes\).* NMT_DATA_MIRROR",
    ) as err:
        fetch(REL, url, SHA, tmp_path / "cache")
    assert "\n" not in str(err.value)
    assert state["requests"] == 2 and _leftovers(tmp_path / "cache") == []


def test_corrupted_transfer_is_reported_never_used_and_fetched_again(server, tmp_path):
    url, state = server
    state["plan"] = ["corrupt"]
    with pytest.raises(DataError, match=r"has SHA-256 [0-9a-f]{12}\.\.\., expected") as err:
        fetch(REL, url, SHA, tmp_path / "cache")
    assert url in str(err.value)
    assert _leftovers(tmp_path / "cache") == []  # the bad bytes were never put in place
    # The next call downloads again (nothing bad was cached) and gets the verified file.
    assert fetch(REL, url, SHA, tmp_path / "cache").read_bytes() == PAYLOAD
    assert state["requests"] == 2


def test_cached_copy_damaged_later_is_replaced(server, tmp_path):
    url, state = server
    path = fetch(REL, url, SHA, tmp_path / "cache")
    path.write_bytes(PAYLOAD[:-1] + b"X")  # same size, one byte changed on disk
    assert fetch(REL, url, SHA, tmp_path / "cache").read_bytes() == PAYLOAD
    assert state["requests"] == 2
