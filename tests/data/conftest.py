import pytest

from tests.data.packed_corpus import build_packed_corpus


@pytest.fixture(scope="session")
def packed_corpus(tmp_path_factory):
    """Two small packed datasets (captions, mixed kinds) made with the data_prep tools."""
    return build_packed_corpus(tmp_path_factory.mktemp("packed_corpus"))
