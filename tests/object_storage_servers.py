"""Real servers for the object-storage tests, each a process of its own that a test can stop and start again on the
same port:

* ``HttpServer``: serves a folder over HTTP with ``Range`` requests (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``),
  as object stores and CDNs answer them; stateless, so stopping it is an outage and nothing is lost;
* ``S3Server``: moto's S3-compatible server (``moto_server``), in memory; ``s3_environment`` gives the standard AWS
  variables that point boto / s3fs at it;
* ``TcpProxy``: a TCP forwarder to another server: stopping the proxy makes a server unreachable without losing
  its state (moto keeps its objects in memory, so stopping moto itself would empty it).

    python -m tests.object_storage_servers http ROOT PORT     # what HttpServer starts
    python -m tests.object_storage_servers proxy PORT TARGET_PORT
"""

from __future__ import annotations

import http.server
import os
import re
import select
import socket
import socketserver
import subprocess
import sys
import time
from pathlib import Path

from megatron_vl.runtime.distributed import free_local_port


class _ServerProcess:
    """A server process on a fixed local port, started on construction; ``stop()`` kills it (SIGKILL, as a crash
    would), ``start()`` starts it again on the same port."""

    def __init__(self, command: list[str], port: int) -> None:
        self.command = command
        self.port = port
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, f"{self.command} exited with {self.process.returncode}"
                assert time.monotonic() < deadline, f"{self.command} did not listen on port {self.port}"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class HttpServer(_ServerProcess):
    """``root`` over HTTP with Range requests at ``url``."""

    def __init__(self, root: Path | str, port: int | None = None) -> None:
        port = port or free_local_port()
        self.url = f"http://127.0.0.1:{port}"
        super().__init__([sys.executable, "-m", "tests.object_storage_servers", "http", str(root), str(port)], port)


class S3Server(_ServerProcess):
    """moto's S3 server at ``endpoint_url``."""

    def __init__(self, port: int | None = None) -> None:
        port = port or free_local_port()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        super().__init__(["moto_server", "-H", "127.0.0.1", "-p", str(port)], port)


class TcpProxy(_ServerProcess):
    """Forwards ``port`` (at ``url``) to ``target_port`` on this machine."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        port = port or free_local_port()
        self.url = f"http://127.0.0.1:{port}"
        super().__init__([sys.executable, "-m", "tests.object_storage_servers", "proxy", str(port), str(target_port)], port)


def s3_environment(endpoint_url: str) -> dict[str, str]:
    """The standard AWS variables for a test server: fixed test credentials, a region, and the endpoint."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint_url,
    }


_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class _RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """A folder over HTTP, answering ``Range: bytes=...`` with 206 and the bytes asked for."""

    def log_message(self, format, *args) -> None:
        pass

    def send_head(self):
        requested = self.headers.get("Range")
        path = self.translate_path(self.path)
        if requested is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        match = _RANGE.match(requested.strip())
        if match is None or match.groups() == ("", ""):
            self.send_error(416, "unsupported Range")
            return None
        first, last = match.groups()
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        if start >= size or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        file = open(path, "rb")
        file.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return file

    def copyfile(self, source, outputfile) -> None:
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining:
            chunk = source.read(min(remaining, 1 << 16))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)


def _serve_http(root: str, port: int) -> None:
    handler = lambda *args, **kwargs: _RangeRequestHandler(*args, directory=root, **kwargs)  # noqa: E731
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        server.serve_forever()


class _ForwardHandler(socketserver.BaseRequestHandler):
    target_port = 0

    def handle(self) -> None:
        with socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            sockets = [self.request, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 60)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(1 << 16)
                    if not data:
                        return
                    (upstream if source is self.request else self.request).sendall(data)


def _serve_proxy(port: int, target_port: int) -> None:
    _ForwardHandler.target_port = target_port
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", port), _ForwardHandler) as server:
        server.serve_forever()


if __name__ == "__main__":
    mode, *values = sys.argv[1:]
    if mode == "http":
        _serve_http(values[0], int(values[1]))
    elif mode == "proxy":
        _serve_proxy(int(values[0]), int(values[1]))
    else:
        raise SystemExit(f"unknown server {mode!r}: http ROOT PORT, or proxy PORT TARGET_PORT")
