import pytest

from tests.training.training_data import build_data_root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """DATA_ROOT with a tokenizer and 128-token packs of captions, interleaved documents and a held-out set."""
    return build_data_root(tmp_path_factory.mktemp("data_root"))
