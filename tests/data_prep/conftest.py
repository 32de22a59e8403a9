import pytest

from data_prep.demo import command as demo_corpus
from tests.data_prep.cli import run_subcommand


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory):
    """A small demo corpus in the raw format: 12 documents of each kind, 2 of each long kind."""
    out = tmp_path_factory.mktemp("demo_raw")
    run_subcommand(demo_corpus, "--out", out, "--samples-per-kind", 12, "--long-samples", 2, "--seed", 3)
    return out
