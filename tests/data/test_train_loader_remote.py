"""The training loader on packed datasets at URLs, from real servers: moto's S3 server (behind a TCP proxy, so an
outage keeps its objects) and an HTTP server with Range requests. The batches are those of the local folders, also
after a resume, through worker processes and across outages; an outage that does not end stops the run naming the
URL."""

import json
import logging
import threading

import pytest

from megatron_vl.data.storage import RemoteReadError
from tests.data.test_train_loader import assert_same_batches, loader_of, take_steps
from tests.object_storage_servers import HttpServer, S3Server, TcpProxy, s3_environment

OUTAGE_SECONDS = 1.5


@pytest.fixture(scope="module")
def servers(packed_corpus):
    """The corpus's two packed datasets in an S3 bucket (``s3``: base URL, ``proxy``) and over HTTP (``http``:
    base URL, ``http_server``); the AWS variables point at the proxy."""
    import s3fs

    with S3Server() as s3, TcpProxy(s3.port) as proxy, HttpServer(packed_corpus.root) as http_server, \
            pytest.MonkeyPatch.context() as patch:
        for name, value in s3_environment(proxy.url).items():
            patch.setenv(name, value)
        filesystem = s3fs.S3FileSystem(skip_instance_cache=True)
        filesystem.mkdir("corpus")
        for dataset in (packed_corpus.captions, packed_corpus.mixed):
            for path in sorted(dataset.iterdir()):
                filesystem.pipe(f"corpus/{dataset.name}/{path.name}", path.read_bytes())
        yield {"s3": "s3://corpus", "proxy": proxy, "http": http_server.url, "http_server": http_server}


def remote_blend(base: str):
    return [(f"{base}/captions", 1.0), (f"{base}/mixed", 3.0)]


@pytest.fixture(scope="module")
def reference(packed_corpus):
    """Four steps from the local folders, and the loader state after each."""
    loader = loader_of(packed_corpus)
    batches = iter(loader)
    steps, states = [], []
    for _ in range(4):
        steps.append([next(batches) for _ in range(loader.micro_batches_per_step)])
        states.append(loader.state_dict())
    return steps, states


@pytest.mark.parametrize("scheme, num_workers", [("s3", 0), ("s3", 2), ("http", 2)])
def test_url_datasets_give_the_batches_of_the_local_folders_and_resume_exactly(
    packed_corpus, servers, reference, scheme, num_workers
):
    steps, states = reference
    blend = remote_blend(servers[scheme])
    loader = loader_of(packed_corpus, blend=blend, num_workers=num_workers)
    remote = take_steps(loader, 2)
    for step in range(2):
        assert_same_batches(remote[step], steps[step])
    state = loader.state_dict()
    assert [d["path"] for d in state["datasets"]] == [path for path, _ in blend]
    assert [d["retried"] for d in state["datasets"]] == [0, 0]
    resumed = loader_of(packed_corpus, blend=blend, num_workers=num_workers)
    resumed.load_state_dict(json.loads(json.dumps(states[1])))  # saved by the run on the local folders
    after = take_steps(resumed, 2)
    for step in range(2):
        assert_same_batches(after[step], steps[2 + step])


def _outage(stop, start) -> threading.Timer:
    stop()
    timer = threading.Timer(OUTAGE_SECONDS, start)
    timer.start()
    return timer


@pytest.mark.parametrize("scheme", ["s3", "http"])
def test_an_outage_mid_read_is_retried_and_counted(packed_corpus, servers, reference, scheme, caplog):
    steps, _ = reference
    server = servers["proxy" if scheme == "s3" else "http_server"]
    loader = loader_of(packed_corpus, blend=remote_blend(servers[scheme]), num_workers=2)
    batches = iter(loader)
    first = [next(batches) for _ in range(loader.micro_batches_per_step)]
    with caplog.at_level(logging.WARNING, logger="megatron_vl.data.train_loader"):
        timer = _outage(server.stop, server.start)
        second = [next(batches) for _ in range(loader.micro_batches_per_step)]
        third = [next(batches) for _ in range(loader.micro_batches_per_step)]
    timer.join()
    for got, expected in zip((first, second, third), steps):
        assert_same_batches(got, expected)
    retried = sum(d["retried"] for d in loader.state_dict()["datasets"])
    assert retried > 0
    assert any("retried after transient errors" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("scheme", ["s3", "http"])
def test_an_outage_that_does_not_end_stops_the_run_naming_the_url(packed_corpus, servers, scheme):
    server = servers["proxy" if scheme == "s3" else "http_server"]
    loader = loader_of(packed_corpus, blend=remote_blend(servers[scheme]), remote_retry_seconds=1.0)
    server.stop()
    try:
        with pytest.raises(RemoteReadError, match=rf"{servers[scheme]}/(captions|mixed)/packed-\d+\..*unreadable after "
                                                  r"\d+ attempts.*check that the store is reachable"):
            take_steps(loader, 1)
    finally:
        server.start()


def test_a_missing_remote_dataset_is_refused_naming_its_manifest(packed_corpus, servers):
    with pytest.raises(ValueError, match=rf"{servers['s3']}/nothing/manifest.json does not exist"):
        loader_of(packed_corpus, blend=[(f"{servers['s3']}/nothing", 1.0)])
