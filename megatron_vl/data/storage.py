"""Reading a packed dataset's files where they are: a local folder, or a URL (``s3://``, ``gs://``, ``https://``, any
fsspec protocol) read by whole-file and byte-range requests.

A URL's filesystem is made lazily in each process that reads, so every DataLoader worker has its own: fsspec's
asynchronous filesystems (s3fs, http) hold an event loop and connection pools that do not survive a fork. Credentials
come from that filesystem's standard environment (for S3: the AWS_* variables, AWS_PROFILE and ~/.aws, instance
roles), never from our configs.

A request that fails with a transient error (connection refused or reset, a timeout, a 5xx answer, a short body) is
retried with exponential backoff for up to ``retry_seconds``; every retry is logged and counted in ``retries``. Then,
or at once for an answer a retry cannot change (credentials refused, a bad request), ``RemoteReadError`` stops the
reader naming the URL. A missing file raises ``FileNotFoundError``, as a missing local file does.
"""

from __future__ import annotations

import logging
import os
import re
import time

import fsspec

DEFAULT_RETRY_SECONDS = 300.0
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# This module owns the retrying (so that every retry is counted and bounded in time): s3fs and botocore try once.
_FILESYSTEM_OPTIONS = {"s3": {"config_kwargs": {"retries": {"total_max_attempts": 1}}}}
_LIBRARY_RETRIES = {"s3": 1}

logger = logging.getLogger(__name__)


class RemoteReadError(RuntimeError):
    """A URL that cannot be read: not a damaged sample, so the loader does not skip it but stops."""


def is_url(location: str | os.PathLike) -> bool:
    return isinstance(location, str) and _URL.match(location) is not None


def join_location(location: str | os.PathLike, *names: str) -> str:
    """``location/name/...`` for a local path or a URL."""
    if is_url(location):
        return "/".join([location.rstrip("/"), *names])
    return os.path.join(location, *names)


def _cannot_succeed(error: Exception) -> bool:
    """An answer a retry will not change: credentials refused, or an HTTP 4xx other than timeout / rate limit."""
    status = getattr(error, "status", None)  # aiohttp.ClientResponseError
    return isinstance(error, PermissionError) or (isinstance(status, int) and 400 <= status < 500 and status not in (408, 429))


class DatasetFiles:
    """The files of one dataset folder, local or at a URL: ``read(name)`` or ``read(name, start, end)``."""

    def __init__(self, location: str | os.PathLike, *, retry_seconds: float = DEFAULT_RETRY_SECONDS) -> None:
        self.is_remote = is_url(location)
        self.location = location.rstrip("/") if self.is_remote else os.path.abspath(os.fspath(location))
        self.retry_seconds = retry_seconds
        self.retries = 0
        """Requests retried after a transient error, in this process."""
        self._filesystem = None
        self._filesystem_pid = None

    def path(self, name: str) -> str:
        return join_location(self.location, name)

    def read(self, name: str, start: int | None = None, end: int | None = None) -> bytes:
        """The file ``name``, or its bytes [start, end)."""
        path = self.path(name)
        if not self.is_remote:
            with open(path, "rb") as file:
                if start is None:
                    return file.read()
                file.seek(start)
                return file.read(end - start)
        return self._read_remote(path, start, end)

    def _read_remote(self, path: str, start: int | None, end: int | None) -> bytes:
        what = path if start is None else f"{path} bytes {start}-{end}"
        deadline = time.monotonic() + self.retry_seconds
        backoff, attempts = FIRST_BACKOFF_SECONDS, 0
        while True:
            attempts += 1
            try:
                data = self._filesystem_here().cat_file(path, start=start, end=end)
                if start is not None and len(data) > end - start:
                    raise RemoteReadError(
                        f"{what}: the server answered {len(data)} bytes, it does not honour byte-range requests; "
                        "serve the dataset from a server or store that does (S3, GCS, nginx, a CDN)"
                    )
                if start is not None and len(data) < end - start:
                    raise EOFError(f"the answer ended after {len(data)} of {end - start} bytes")
                return data
            except (FileNotFoundError, RemoteReadError):
                raise
            except Exception as error:
                if _cannot_succeed(error):
                    raise RemoteReadError(
                        f"{what}: the store refuses the request ({type(error).__name__}: {error}); check the URL and "
                        "that the credentials in this environment (AWS_* variables, AWS_PROFILE, ~/.aws) may read it"
                    ) from error
                if time.monotonic() + backoff > deadline:
                    raise RemoteReadError(
                        f"{what}: unreadable after {attempts} attempts over {self.retry_seconds:g} s "
                        f"({type(error).__name__}: {error}); check that the store is reachable from this node "
                        "(endpoint, network, credentials), or raise DataConfig.remote_retry_seconds to ride out "
                        "longer outages, then resume from the last checkpoint"
                    ) from error
                self.retries += 1
                logger.warning(
                    "transient error reading %s (%s: %s); retry %d in %.1f s",
                    what, type(error).__name__, error, attempts, backoff,
                )
                time.sleep(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF_SECONDS)

    def _filesystem_here(self):
        if self._filesystem_pid != os.getpid():
            protocol = fsspec.utils.get_protocol(self.location)
            self._filesystem = fsspec.filesystem(protocol, skip_instance_cache=True, **_FILESYSTEM_OPTIONS.get(protocol, {}))
            if protocol in _LIBRARY_RETRIES:
                self._filesystem.retries = _LIBRARY_RETRIES[protocol]
            self._filesystem_pid = os.getpid()
        return self._filesystem

    def __getstate__(self) -> dict:
        """Pickled (to a spawned worker) without the filesystem, which the worker makes for itself."""
        return {**self.__dict__, "_filesystem": None, "_filesystem_pid": None}
