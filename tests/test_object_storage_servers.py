"""The test servers behave as the object-storage tests assume: byte ranges over HTTP, S3 through the standard AWS
variables, and outages that end with the data intact."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.object_storage_servers import HttpServer, S3Server, TcpProxy, s3_environment


def _get(url: str, byte_range: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Range": byte_range} if byte_range else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_http_server_answers_ranges_and_comes_back_after_a_stop(tmp_path):
    (tmp_path / "data.bin").write_bytes(bytes(range(256)) * 4)
    with HttpServer(tmp_path) as server:
        url = f"{server.url}/data.bin"
        assert _get(url) == (200, bytes(range(256)) * 4)
        assert _get(url, "bytes=10-19") == (206, bytes(range(10, 20)))
        assert _get(url, "bytes=1020-") == (206, bytes(range(252, 256)))
        assert _get(url, "bytes=-2") == (206, bytes([254, 255]))
        server.stop()
        with pytest.raises(urllib.error.URLError):
            _get(url)
        server.start()
        assert _get(url, "bytes=0-0") == (206, b"\x00")


def test_s3_server_through_a_proxy_keeps_its_objects_across_an_outage(monkeypatch):
    import s3fs

    with S3Server() as s3, TcpProxy(s3.port) as proxy:
        for name, value in s3_environment(proxy.url).items():
            monkeypatch.setenv(name, value)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("bucket")
        fs.pipe("bucket/key.bin", b"0123456789")
        assert fs.cat_file("bucket/key.bin", start=2, end=5) == b"234"
        proxy.stop()
        proxy.start()
        assert s3fs.S3FileSystem(skip_instance_cache=True).cat_file("bucket/key.bin") == b"0123456789"
