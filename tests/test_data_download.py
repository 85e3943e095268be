"""download.fetch against a local HTTP server, a mirror folder, and no network at all."""

from __future__ import annotations

import hashlib
import http.server
import socket

import pytest
from conftest import serve_http

from nmt.data import download
from nmt.data.download import fetch
from nmt.errors import DataError

PAYLOAD = b"a small file\nwith two lines\n"
SHA = hashlib.sha256(PAYLOAD).hexdigest()
REL = "corpus/file.txt"


@pytest.fixture()
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1; ``state`` counts requests and can fail some."""
    root = tmp_path / "www"
    (root / "corpus").mkdir(parents=True)
    (root / REL).write_bytes(PAYLOAD)
    state = {"requests": 0, "fail_first": 0}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 - http.server's naming
            state["requests"] += 1
            if state["fail_first"] > 0:
                state["fail_first"] -= 1
                self.send_error(503, "busy")
                return
            super().do_GET()

        def log_message(self, *args):  # keep test output quiet
            pass

    with serve_http(Handler) as url:
        yield url, root, state


pytestmark = pytest.mark.usefixtures("offline_downloads")


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{REL}"


def test_good_download_is_verified_cached_and_not_fetched_twice(server, tmp_path):
    base, _, state = server
    path = fetch(REL, f"{base}/{REL}", SHA, tmp_path / "cache")
    assert path == tmp_path / "cache" / "downloads" / REL
    assert path.read_bytes() == PAYLOAD
    assert state["requests"] == 1
    assert fetch(REL, f"{base}/{REL}", SHA, tmp_path / "cache") == path
    assert state["requests"] == 1  # the verified cached copy is used
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]  # no temporaries left


def test_checksum_mismatch_leaves_no_file_behind(server, tmp_path):
    base, _, _ = server
    with pytest.raises(DataError, match="SHA-256"):
        fetch(REL, f"{base}/{REL}", "0" * 64, tmp_path / "cache")
    folder = tmp_path / "cache" / "downloads" / "corpus"
    assert list(folder.iterdir()) == []


def test_damaged_cached_copy_is_downloaded_again(server, tmp_path):
    base, _, state = server
    target = tmp_path / "cache" / "downloads" / REL
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD[:5])  # a partial file from an old crash
    assert fetch(REL, f"{base}/{REL}", SHA, tmp_path / "cache").read_bytes() == PAYLOAD
    assert state["requests"] == 1


def test_one_retry_on_a_transient_error(server, tmp_path):
    base, _, state = server
    state["fail_first"] = 1
    assert fetch(REL, f"{base}/{REL}", SHA, tmp_path / "cache").read_bytes() == PAYLOAD
    assert state["requests"] == 2
    state["fail_first"] = 2
    with pytest.raises(DataError, match="could not download"):
        fetch(REL, f"{base}/{REL}", hashlib.sha256(b"x").hexdigest(), tmp_path / "other")


def test_missing_file_on_server_is_a_clear_error(server, tmp_path):
    base, _, _ = server
    with pytest.raises(DataError, match="HTTP 404.*NMT_DATA_MIRROR"):
        fetch("corpus/nope.txt", f"{base}/corpus/nope.txt", SHA, tmp_path / "cache")


def test_mirror_replaces_the_network(server, tmp_path, monkeypatch):
    _, root, _ = server
    url = _closed_port_url()  # would fail if it were used
    cached = tmp_path / "cache" / "downloads" / REL
    # Copied into the cache (verified), so what was prepared stays usable without the mirror.
    assert fetch(REL, url, SHA, tmp_path / "cache", mirror=root) == cached
    assert cached.read_bytes() == (root / REL).read_bytes()
    monkeypatch.setenv(download.MIRROR_ENV, str(root))
    assert fetch(REL, url, SHA, tmp_path / "cache") == cached
    monkeypatch.delenv(download.MIRROR_ENV)
    assert fetch(REL, url, SHA, tmp_path / "cache") == cached  # no mirror, no network needed
    assert not [p for p in cached.parent.iterdir() if p.name != cached.name]  # no temporaries


def test_mirror_file_is_verified_too(server, tmp_path):
    _, root, _ = server
    with pytest.raises(DataError, match="mirror file .* SHA-256"):
        fetch(REL, _closed_port_url(), "f" * 64, tmp_path / "cache", mirror=root)


def test_mirror_without_the_file_names_it(tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DataError, match=r"has no corpus/file\.txt"):
        fetch(REL, _closed_port_url(), SHA, tmp_path / "cache", mirror=tmp_path / "mirror")


def test_nonexistent_mirror_is_one_clear_sentence(tmp_path, monkeypatch):
    with pytest.raises(
        DataError, match=r"mirror folder .*nowhere \(from data\.mirror\) does not exist"
    ):
        fetch(REL, _closed_port_url(), SHA, tmp_path / "cache", mirror=tmp_path / "nowhere")
    monkeypatch.setenv(download.MIRROR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="from NMT_DATA_MIRROR"):
        fetch(REL, _closed_port_url(), SHA, tmp_path / "cache")


def test_offline_without_mirror_names_the_environment_variable(tmp_path):
    url = _closed_port_url()
    with pytest.raises(DataError) as err:
        fetch(REL, url, SHA, tmp_path / "cache")
    message = str(err.value)
    assert f"could not download {url}" in message
    assert "NMT_DATA_MIRROR=/path/to/mirror" in message and "data.mirror" in message
    assert REL in message and "\n" not in message
    leftovers = list((tmp_path / "cache" / "downloads").rglob("*"))
    assert [p for p in leftovers if p.is_file()] == []
