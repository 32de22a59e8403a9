"""ingest reads what webdataset users pass (brace patterns, https://, s3://, pipe:) from real servers, gives the
samples a local ingest gives, and retries, then reports, a shard it cannot read."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from PIL import Image

from data_prep.ingest import command as ingest
from data_prep.ingest import input_streams
from data_prep.ingest.input_locations import find_inputs, public_location
from data_prep.ingest.input_streams import RetrySettings, UnreadableInput, read_with_retries
from data_prep.sample_shards.manifest import load_manifest
from data_prep.webdataset_tar import iter_keyed_members
from megatron_vl.runtime.distributed import free_local_port
from tests.data_prep.cli import run_subcommand
from tests.data_prep.ingest.test_ingest import add_member
from tests.object_storage_servers import HttpServer, S3Server, TcpProxy, s3_environment

SHARDS = 3
SAMPLES_PER_SHARD = 4
PATTERN = "shard-{000..002}.tar"


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (seed * 40 % 256, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def raw_shards(tmp_path_factory):
    """Three webdataset shards of four documents each: img2dataset-style captions and text documents."""
    folder = tmp_path_factory.mktemp("raw_shards")
    for shard in range(SHARDS):
        with tarfile.open(folder / f"shard-{shard:03d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in range(SAMPLES_PER_SHARD):
                key = f"{shard:03d}{sample:03d}"
                if sample % 2:
                    add_member(tar, f"{key}.json", json.dumps({"kind": "text", "text": f"Text {key}."}).encode())
                else:
                    add_member(tar, f"{key}.jpg", _jpeg(shard * SAMPLES_PER_SHARD + sample))
                    add_member(tar, f"{key}.txt", f"A picture, number {key}.".encode())
    return folder


def run_ingest(out, *inputs, attempts=3):
    argv = ["--input", *inputs, "--out", out, "--kind", "caption", "--workers", 1, "--shard-size", 5,
            "--read-attempts", attempts, "--retry-backoff", 0.01]
    assert run_subcommand(ingest, *argv) == 0
    return load_manifest(str(out))


@pytest.fixture(scope="module")
def local_ingest(raw_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("local_ingest")
    return out, run_ingest(out, raw_shards / PATTERN)


def stored_samples(out) -> tuple[list, list[dict]]:
    """Every sample of an output (members as stored, the JSON's ``source`` taken out) and the sources."""
    samples, sources = [], []
    for shard in load_manifest(str(out)).shards:
        for key, members in iter_keyed_members(str(out / shard.name)):
            meta = json.loads(members["json"])
            sources.append(meta.pop("source"))
            samples.append((key, {**members, "json": meta}))
    return samples, sources


def assert_same_samples_as_local(out, local_ingest, raw_shards, source_prefix):
    """The samples a local ingest stored, byte for byte but for the source shard each names: the location read."""
    local_out, local_manifest = local_ingest
    manifest = load_manifest(str(out))
    assert manifest.num_samples == local_manifest.num_samples == SHARDS * SAMPLES_PER_SHARD
    assert [(s.num_samples, s.bytes) for s in manifest.shards] == [(s.num_samples, s.bytes) for s in local_manifest.shards]
    (samples, sources), (local_samples, local_sources) = stored_samples(out), stored_samples(local_out)
    assert samples == local_samples
    assert sources == [{"tar": source["tar"].replace(str(raw_shards), source_prefix), "key": source["key"]}
                       for source in local_sources]
    assert [entry.path for entry in manifest.inputs] == [f"{source_prefix}/shard-{n:03d}.tar" for n in range(SHARDS)]
    assert manifest.rejects == {} and all(entry.unreadable is None for entry in manifest.inputs)


@pytest.fixture
def s3_bucket(raw_shards, monkeypatch):
    """The shards in bucket ``raw`` of a moto server behind a proxy (``proxy.stop()`` is an outage)."""
    import s3fs

    with S3Server() as s3, TcpProxy(s3.port) as proxy:
        for name, value in s3_environment(proxy.url).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries would only slow the outage test down
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("raw")
        for shard in range(SHARDS):
            fs.put_file(str(raw_shards / f"shard-{shard:03d}.tar"), f"raw/shard-{shard:03d}.tar")
        yield proxy


@pytest.fixture
def http_server(raw_shards):
    with HttpServer(raw_shards) as server:
        yield server


def test_brace_patterns_expand_in_order_and_local_inputs_must_exist(raw_shards):
    assert find_inputs([str(raw_shards / "shard-{000..002}.tar")]) == [str(raw_shards / f"shard-{n:03d}.tar")
                                                                      for n in range(3)]
    assert find_inputs([str(raw_shards / "shard-{002,000}.tar"), str(raw_shards / "shard-001.tar")]) == [
        str(raw_shards / f"shard-{n}.tar") for n in ("002", "000", "001")]
    assert find_inputs(["https://host/a/{x,y}.tar", "s3://b/{9..10}.jsonl", "pipe:cat {a,b}.tar"]) == [
        "https://host/a/x.tar", "https://host/a/y.tar", "s3://b/9.jsonl", "s3://b/10.jsonl",
        "pipe:cat a.tar", "pipe:cat b.tar"]
    with pytest.raises(ValueError, match="shard-003.tar does not exist"):
        find_inputs([str(raw_shards / "shard-{000..003}.tar")])
    with pytest.raises(ValueError, match="shard-001.tar is named twice"):
        find_inputs([str(raw_shards / "shard-{000..001}.tar"), str(raw_shards / "shard-001.tar")])
    with pytest.raises(ValueError, match="brace pattern"):
        find_inputs(["s3://bucket/shards/"])


def test_recorded_urls_keep_no_credentials_or_query():
    assert public_location("https://user:secret@host:8443/a/b.tar?X-Amz-Signature=abc") == "https://host:8443/a/b.tar"
    assert public_location("s3://bucket/a.tar") == "s3://bucket/a.tar"
    assert public_location("pipe:cat a.tar") == "pipe:cat a.tar"


def test_https_ingest_gives_the_local_samples(raw_shards, local_ingest, tmp_path):
    with HttpServer(raw_shards) as server:
        run_ingest(tmp_path, f"{server.url}/{PATTERN}")
        assert_same_samples_as_local(tmp_path, local_ingest, raw_shards, server.url)


def test_s3_ingest_gives_the_local_samples(s3_bucket, raw_shards, local_ingest, tmp_path):
    run_ingest(tmp_path, f"s3://raw/{PATTERN}")
    assert_same_samples_as_local(tmp_path, local_ingest, raw_shards, "s3://raw")


def test_pipe_commands_give_the_local_samples(raw_shards, local_ingest, tmp_path):
    run_ingest(tmp_path, f"pipe:cat {raw_shards}/{PATTERN}")
    assert_same_samples_as_local(tmp_path, local_ingest, raw_shards, f"pipe:cat {raw_shards}")


def test_a_read_cut_mid_shard_is_retried_without_repeating_its_documents(raw_shards, local_ingest, tmp_path):
    """The first read of each shard stops half-way with a failed command; the retry reads it whole."""
    marks = tmp_path / "marks"
    marks.mkdir()
    command = (f"if [ -e {marks}/$N ]; then cat {raw_shards}/shard-$N.tar; "
               f"else touch {marks}/$N; head -c 5000 {raw_shards}/shard-$N.tar; exit 1; fi")
    out = tmp_path / "out"
    run_ingest(out, *[f"pipe:N={n:03d}; {command}" for n in range(SHARDS)])
    assert sorted(path.name for path in marks.iterdir()) == ["000", "001", "002"]
    samples, sources = stored_samples(out)
    assert samples == stored_samples(local_ingest[0])[0]
    assert [source["key"] for source in sources] == [f"{n:03d}{k:03d}" for n in range(SHARDS) for k in range(4)]


@pytest.mark.parametrize("store", ["https", "s3"])
def test_a_server_stopped_mid_ingest_and_restarted_is_survived(store, raw_shards, local_ingest, tmp_path, monkeypatch,
                                                               request):
    """The server goes down once the first shard is read, and comes back during the first retry's backoff."""
    if store == "https":
        server = request.getfixturevalue("http_server")
        location, source_prefix = f"{server.url}/{PATTERN}", server.url
    else:
        server = request.getfixturevalue("s3_bucket")
        location, source_prefix = f"s3://raw/{PATTERN}", "s3://raw"
    opened, backoffs = [], []
    real_open = input_streams.open_location

    def open_location(where, **kwargs):
        opened.append(where)
        if len(opened) == 2:
            server.stop()
        return real_open(where, **kwargs)

    def sleep(seconds):
        backoffs.append(seconds)
        if server.process is None:
            server.start()

    monkeypatch.setattr(input_streams, "open_location", open_location)
    monkeypatch.setattr(input_streams, "sleep", sleep)
    run_ingest(tmp_path, location, attempts=4)
    assert_same_samples_as_local(tmp_path, local_ingest, raw_shards, source_prefix)
    assert opened[1] == opened[2] and len(backoffs) >= 1


def test_a_truncated_shard_is_retried_then_reported_with_its_url(raw_shards, tmp_path, monkeypatch, capsys):
    served = tmp_path / "served"
    served.mkdir()
    for shard in range(SHARDS):
        data = (raw_shards / f"shard-{shard:03d}.tar").read_bytes()
        (served / f"shard-{shard:03d}.tar").write_bytes(data[: len(data) // 2] if shard == 1 else data)
    backoffs = []
    monkeypatch.setattr(input_streams, "sleep", backoffs.append)
    out = tmp_path / "out"
    with HttpServer(served) as server:
        manifest = run_ingest(out, f"{server.url}/{PATTERN}", attempts=3)
    url = f"{server.url}/shard-001.tar"
    logged = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(entry["tar"], entry["reason"]) for entry in logged] == [(url, "unreadable_shard")]
    assert "3 reads failed" in logged[0]["detail"] and "ReadError" in logged[0]["detail"]
    assert backoffs == [0.01, 0.02]
    assert manifest.rejects == {"unreadable_shard": 1} and manifest.num_rejected == 1
    read_before_the_cut = manifest.inputs[1].documents
    assert 0 < read_before_the_cut < SAMPLES_PER_SHARD and manifest.inputs[1].unreadable == logged[0]["detail"]
    assert manifest.num_samples == 2 * SAMPLES_PER_SHARD + read_before_the_cut
    summary = capsys.readouterr().out
    assert "1 of 3 inputs could not be read" in summary and url in summary


def test_unreachable_and_missing_urls_are_reported_after_retries(raw_shards, tmp_path, monkeypatch):
    backoffs = []
    monkeypatch.setattr(input_streams, "sleep", backoffs.append)
    unreachable = f"http://127.0.0.1:{free_local_port()}/shard-000.tar"
    with HttpServer(raw_shards) as server:
        missing = f"{server.url}/shard-404.tar"
        manifest = run_ingest(tmp_path, unreachable, missing, f"{server.url}/shard-002.tar", attempts=3)
    logged = {entry["tar"]: entry["detail"] for entry in map(json.loads, (tmp_path / "rejects.jsonl").open())}
    assert sorted(logged) == sorted([unreachable, missing])
    assert all("3 reads failed" in detail for detail in logged.values())
    assert backoffs == [0.01, 0.02] * 2
    assert manifest.rejects == {"unreadable_shard": 2} and manifest.num_samples == SAMPLES_PER_SHARD
    assert [entry.unreadable is not None for entry in manifest.inputs] == [True, True, False]


def test_a_shard_that_changes_between_reads_is_reported(tmp_path, monkeypatch):
    reads = iter([[("a", 1), ("b", 2)], [("a", 1), ("c", 3), ("d", 4)]])
    monkeypatch.setattr(input_streams, "sleep", lambda seconds: None)

    def read(stream):
        items = next(reads)
        yield items[0]
        if len(items) == 2:
            yield items[1]
            raise OSError("connection reset")
        yield from items[1:]

    (tmp_path / "x.tar").write_bytes(b"")
    got = []
    with pytest.raises(UnreadableInput, match="item 1 was b on an earlier read and is c now"):
        for item in read_with_retries(str(tmp_path / "x.tar"), read, lambda item: item[0], RetrySettings(attempts=2)):
            got.append(item)
    assert got == [("a", 1), ("b", 2)]
