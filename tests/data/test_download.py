"""The download layer against a local HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from vaelab.data.base import DataError
from vaelab.data.download import Resource, fetch, fetch_all, import_resources, verify

PAYLOAD = b"vaelab test payload " * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(base URL, served folder, list of requested paths) of a server in a thread."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("VAELAB_OFFLINE", raising=False)
    served = tmp_path / "served"
    served.mkdir()
    (served / "good").mkdir()
    (served / "good" / "file.bin").write_bytes(PAYLOAD)
    (served / "bad").mkdir()
    (served / "bad" / "file.bin").write_bytes(PAYLOAD[:-1] + b"!")
    requests: list[str] = []
    handler = functools.partial(
        type("H", (_Handler,), {"requests": requests}), directory=str(served)
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    httpd.shutdown()
    httpd.server_close()


def _resource(*urls: str, size: int | None = len(PAYLOAD)) -> Resource:
    return Resource("file.bin", tuple(urls), PAYLOAD_SHA, size)


def test_fetch_downloads_verifies_and_stamps(server, tmp_path):
    base, _, requests = server
    path = fetch(_resource(f"{base}/good/file.bin"), tmp_path / "data")
    assert path == tmp_path / "data" / "file.bin"
    assert path.read_bytes() == PAYLOAD
    assert (tmp_path / "data" / "file.bin.verified").is_file()
    assert requests == ["/good/file.bin"]
    assert not list((tmp_path / "data").glob(".*part"))  # no temporary file left behind


def test_verified_file_is_never_downloaded_again(server, tmp_path):
    base, _, requests = server
    resource = _resource(f"{base}/good/file.bin")
    fetch(resource, tmp_path)
    fetch(resource, tmp_path)
    fetch(resource, tmp_path, offline=True)  # present and verified: no network needed
    assert requests == ["/good/file.bin"]


def test_checksum_mismatch_tries_the_next_mirror(server, tmp_path):
    base, _, requests = server
    path = fetch(_resource(f"{base}/bad/file.bin", f"{base}/good/file.bin", size=None), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert requests == ["/bad/file.bin", "/good/file.bin"]


def test_checksum_mismatch_everywhere_is_an_error(server, tmp_path):
    base, _, _ = server
    with pytest.raises(DataError, match="sha256 .* expected " + PAYLOAD_SHA):
        fetch(_resource(f"{base}/bad/file.bin", size=None), tmp_path, dataset="demo")
    assert not (tmp_path / "file.bin").exists()


def test_404_then_mirror(server, tmp_path):
    base, _, requests = server
    path = fetch(_resource(f"{base}/missing/file.bin", f"{base}/good/file.bin"), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert requests == ["/missing/file.bin", "/good/file.bin"]


def test_all_urls_fail_message_says_what_and_where(server, tmp_path):
    base, _, _ = server
    urls = (f"{base}/missing/file.bin", f"{base}/also-missing/file.bin")
    folder = tmp_path / "demo"
    with pytest.raises(DataError) as info:
        fetch(_resource(*urls), folder, dataset="demo")
    message = str(info.value)
    for expected in ("file.bin", PAYLOAD_SHA, *urls, str(folder), "vaelab data demo --from PATH"):
        assert expected in message
    assert "404" in message


def test_offline_env_skips_the_network(server, tmp_path, monkeypatch):
    base, _, requests = server
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    with pytest.raises(DataError, match="offline"):
        fetch(_resource(f"{base}/good/file.bin"), tmp_path, dataset="demo")
    assert requests == []


def test_corrupt_file_is_moved_aside_and_replaced(server, tmp_path, capsys):
    base, _, _ = server
    (tmp_path / "file.bin").write_bytes(b"x" * len(PAYLOAD))
    path = fetch(_resource(f"{base}/good/file.bin"), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert (tmp_path / "file.bin.corrupt").read_bytes() == b"x" * len(PAYLOAD)
    assert "corrupt" in capsys.readouterr().err


def test_corrupt_file_offline_is_reported(tmp_path):
    (tmp_path / "file.bin").write_bytes(b"short")
    with pytest.raises(DataError, match="was corrupt .*size 5 bytes"):
        fetch(_resource(), tmp_path, offline=True, dataset="demo")
    assert (tmp_path / "file.bin.corrupt").is_file()


def test_fetch_all_names_every_missing_file(tmp_path):
    other = Resource("other.bin", ("http://127.0.0.1:9/other.bin",), "0" * 64)
    with pytest.raises(DataError) as info:
        fetch_all([_resource(), other], tmp_path, offline=True, dataset="demo")
    assert "file.bin" in str(info.value) and "other.bin" in str(info.value)


def test_stamp_is_invalidated_when_the_file_changes(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(PAYLOAD)
    resource = _resource(size=None)
    assert verify(resource, path) is None
    path.write_bytes(PAYLOAD[:-1] + b"?")  # same size, new content and mtime
    assert "expected" in verify(resource, path)


def test_md5_only_resource(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(PAYLOAD)
    resource = Resource("file.bin", (), "", md5=hashlib.md5(PAYLOAD).hexdigest())
    assert verify(resource, path) is None
    assert verify(Resource("file.bin", (), "", md5="0" * 32), path).startswith("md5")


def test_import_resources_copies_and_verifies(tmp_path):
    source = tmp_path / "downloads" / "nested"
    source.mkdir(parents=True)
    (source / "file.bin").write_bytes(PAYLOAD)
    (path,) = import_resources([_resource()], tmp_path / "downloads", tmp_path / "data")
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in source.iterdir()) == ["file.bin"]  # nothing written beside it
    assert (tmp_path / "data" / "file.bin.verified").is_file()  # the copy is stamped
    (source / "file.bin").write_bytes(b"wrong")
    (tmp_path / "data" / "file.bin").unlink()
    with pytest.raises(DataError, match="does not match"):
        import_resources([_resource()], source / "file.bin", tmp_path / "data")
    with pytest.raises(FileNotFoundError):
        import_resources([_resource()], tmp_path / "nowhere", tmp_path / "data")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"filename": "a/b", "urls": (), "sha256": "0" * 64}, ValueError),
        ({"filename": "x", "urls": (), "sha256": "abc"}, ValueError),
        ({"filename": "x", "urls": (), "sha256": "", "md5": "Z" * 32}, ValueError),
        ({"filename": "x", "urls": ["http://a"], "sha256": "0" * 64}, TypeError),
    ],
)
def test_resource_rejects_bad_fields(kwargs, error):
    with pytest.raises(error):
        Resource(**kwargs)


def test_message_paths_are_paths(tmp_path):
    with pytest.raises(DataError) as info:
        fetch(_resource(), Path(tmp_path) / "x", offline=True)
    assert "vaelab data NAME --from PATH" in str(info.value)
