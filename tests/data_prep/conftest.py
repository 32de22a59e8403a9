import pytest

from data_prep.demo import command as demo_corpus
from data_prep.demo import documents
from tests.data_prep.cli import run_subcommand

PICTURE_AND_TEXT_FILES = [name for name in (*documents.GENERATORS, *documents.LONG_GENERATORS) if name != "language"]
"""The demo files of picture and text kinds; the videos and GUI screens are drawn by tests of their own
(tests/data_prep/demo/conftest.py), so the ingest and pack tests sharing ``demo_raw`` keep their counts."""


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory):
    """A small demo corpus in the raw format: 12 documents of each picture and text kind, 2 of each long kind."""
    out = tmp_path_factory.mktemp("demo_raw")
    run_subcommand(demo_corpus, "--out", out, "--samples-per-kind", 12, "--long-samples", 2, "--seed", 3,
                   "--kinds", *PICTURE_AND_TEXT_FILES)
    return out
