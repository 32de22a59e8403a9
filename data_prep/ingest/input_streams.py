"""Reading one input location as a stream, with retries that neither lose nor repeat a document.

Local files are opened directly, URLs through fsspec (``s3://`` with s3fs, ``gs://`` with gcsfs,
``http(s)://`` with aiohttp; credentials come from the standard environment of each, such as the AWS
variables and profiles), and ``pipe:`` commands with webdataset's ``gopen`` (their exit status is
checked). A read that fails (unreachable server, connection lost, truncated tar, failed command) is
retried from the start of the location after a backoff; the documents it had yielded already are
read again and passed over, checked to be the same ones, so a retry never repeats a document. After
the last attempt the location is ``UnreadableInput``: the caller reports it with the error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar

import fsspec

from data_prep.ingest.input_locations import is_pipe, is_url
from megatron_vl.config.validation import non_negative_number, positive_int

Item = TypeVar("Item")

sleep = time.sleep


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetrySettings:
    """How often ingest reads an input location before it reports it unreadable."""

    attempts: int = 4
    """Reads of one location, the first included (1: no retry)."""
    backoff_s: float = 2.0
    """Wait before the first retry, in seconds; doubled before each further one."""

    def __post_init__(self) -> None:
        positive_int("RetrySettings", "attempts", self.attempts)
        non_negative_number("RetrySettings", "backoff_s", self.backoff_s)


class UnreadableInput(Exception):
    """A location that could not be read to its end; ``detail`` says why, ``documents_read`` how far it got."""

    def __init__(self, location: str, detail: str, documents_read: int) -> None:
        super().__init__(f"{location}: {detail}")
        self.location = location
        self.detail = detail
        self.documents_read = documents_read


def read_errors() -> tuple[type[BaseException], ...]:
    """What a failed read raises: OS and network errors (OSError; aiohttp's and botocore's own where
    fsspec's HTTP or s3fs lets them through), and tarfile's and gzip's for cut or corrupt data."""
    errors: list[type[BaseException]] = [OSError, EOFError, tarfile.TarError, gzip.BadGzipFile]
    with contextlib.suppress(ImportError):
        import aiohttp

        errors.append(aiohttp.ClientError)
    with contextlib.suppress(ImportError):
        import botocore.exceptions

        errors.append(botocore.exceptions.BotoCoreError)
    return tuple(errors)


@contextlib.contextmanager
def open_location(location: str, *, fresh_connection: bool = False) -> Iterator[BinaryIO]:
    """A binary stream of the location's bytes (gzip JSONL decompressed)."""
    compression = "gzip" if location.endswith(".gz") else None
    if is_pipe(location):
        # webdataset imports torch (a second per process): only pipe: inputs pay for it.
        from webdataset.gopen import gopen_pipe

        stream = gopen_pipe(location, "rb")
        try:
            yield stream
        finally:
            stream.close()
    elif is_url(location):
        # A filesystem cached across an outage may hold dead connections: a retry asks for a new one.
        with fsspec.open(location, "rb", compression=compression, skip_instance_cache=fresh_connection) as stream:
            yield stream
    elif compression:
        with gzip.open(location, "rb") as stream:
            yield stream
    else:
        with open(location, "rb") as stream:
            yield stream


def read_with_retries(
    location: str,
    read: Callable[[BinaryIO], Iterator[Item]],
    identity: Callable[[Item], object],
    retry: RetrySettings,
) -> Iterator[Item]:
    """``read(stream)`` of the location, retried from the start on a failed read; on a retry the first
    items (as many as were yielded) are read again, compared by ``identity`` and not yielded again.
    Raises ``UnreadableInput`` when the last attempt fails."""
    yielded: list[object] = []
    errors = read_errors()
    last_error = ""
    for attempt in range(retry.attempts):
        if attempt:
            sleep(retry.backoff_s * 2 ** (attempt - 1))
        try:
            with open_location(location, fresh_connection=attempt > 0) as stream:
                read_now = 0
                for item in read(stream):
                    if read_now < len(yielded) and identity(item) != yielded[read_now]:
                        raise UnreadableInput(location, f"item {read_now} was {yielded[read_now]} on an earlier read "
                                              f"and is {identity(item)} now: the input changed while ingest read it",
                                              len(yielded))
                    if read_now == len(yielded):
                        yielded.append(identity(item))
                        yield item
                    read_now += 1
            if read_now < len(yielded):
                raise UnreadableInput(location, f"a retry read {read_now} items, an earlier read {len(yielded)}: "
                                      "the input changed while ingest read it", len(yielded))
            return
        # A missing object is retried too: fsspec's HTTP reports an unreachable server as FileNotFoundError.
        except errors as error:
            last_error = _describe(error)
    raise UnreadableInput(location, f"{retry.attempts} reads failed, the last with {last_error}", len(yielded))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def describe_failure(failure: UnreadableInput) -> str:
    """The reject-log detail of an unreadable location."""
    return (f"{failure.detail}; {failure.documents_read} documents were read from it before (they are ingested), "
            "any after are missing")
