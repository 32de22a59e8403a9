"""Where ``ingest`` reads from: the ``--input`` arguments expanded into one list of input locations.

An argument is what webdataset users pass: a local file or directory, a URL (``s3://``, ``gs://``,
``https://``, ``http://``), a ``pipe:`` command whose standard output is a tar, or any of these with
brace patterns (``shards/laion-{000000..000123}.tar``, ``{train,extra}.jsonl``) expanded as
webdataset's ``braceexpand`` does. A location is a JSONL file (``*.jsonl``, ``*.jsonl.gz``) or a
webdataset tar (``*.tar``, and every ``pipe:`` command).
"""

from __future__ import annotations

import os
import urllib.parse

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
TAR_SUFFIX = ".tar"
URL_SCHEMES = ("s3", "gs", "gcs", "http", "https")
PIPE_PREFIX = "pipe:"


def is_pipe(location: str) -> bool:
    return location.startswith(PIPE_PREFIX)


def is_url(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in URL_SCHEMES


def is_tar(location: str) -> bool:
    """A webdataset tar (``pipe:`` commands always give one) rather than a JSONL file."""
    return is_pipe(location) or _path_part(location).endswith(TAR_SUFFIX)


def public_location(location: str) -> str:
    """The location as ingest records it (samples, reject log, manifest): a URL without its user
    name, password and query, which may hold credentials (presigned URLs) and change from run to run."""
    if not is_url(location):
        return location
    parts = urllib.parse.urlsplit(location)
    return urllib.parse.urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                                    parts.path, "", ""))


def find_inputs(arguments: list[str]) -> list[str]:
    """Every input location named by ``arguments``, in a fixed order: arguments in the order given,
    each argument's brace expansion in its written order, directories searched recursively and sorted.

    Local files must exist; URLs and ``pipe:`` commands are not touched here (a shard that cannot be
    read is retried and reported when ingest reads it). A location named twice is an error, since its
    documents would be ingested twice.
    """
    found = []
    for argument in arguments:
        for location in _brace_expansion(argument):
            found.extend(_expand_location(location))
    seen = set()
    for location in found:
        if location in seen:
            raise ValueError(f"input {location} is named twice by --input {' '.join(arguments)}; name each input once")
        seen.add(location)
    return found


def _brace_expansion(argument: str) -> list[str]:
    if "{" not in argument:
        return [argument]
    import braceexpand  # here, not at the top: plain paths need none (the GPU check's machine has no braceexpand)

    return list(braceexpand.braceexpand(argument))


def _expand_location(location: str) -> list[str]:
    if is_pipe(location):
        return [location]
    if is_url(location):
        if not _path_part(location).endswith(JSONL_SUFFIXES + (TAR_SUFFIX,)):
            raise ValueError(f"input {location} is neither JSONL (*.jsonl, *.jsonl.gz) nor a webdataset tar (*.tar); "
                             "name remote shards one by one or with a brace pattern (shards/{000000..000123}.tar)")
        return [location]
    if os.path.isdir(location):
        matches = [
            os.path.join(folder, name)
            for folder, _, names in os.walk(location)
            for name in names
            if name.endswith(JSONL_SUFFIXES + (TAR_SUFFIX,))
        ]
        if not matches:
            raise ValueError(f"input directory {location} holds no *.jsonl, *.jsonl.gz or *.tar files")
        return sorted(matches)
    if os.path.isfile(location):
        if not location.endswith(JSONL_SUFFIXES + (TAR_SUFFIX,)):
            raise ValueError(f"input {location} is neither JSONL (*.jsonl, *.jsonl.gz) nor a webdataset tar (*.tar)")
        return [location]
    raise ValueError(f"input {location} does not exist")


def _path_part(location: str) -> str:
    return urllib.parse.urlsplit(location).path if is_url(location) else location
