import pytest

from data_prep.demo import command as demo_corpus
from data_prep.demo import gui_documents, video_documents
from tests.data_prep.cli import run_subcommand

MEDIA_FILES = [*video_documents.GENERATORS, *video_documents.LONG_GENERATORS, *gui_documents.GENERATORS]
"""The demo files of video and GUI kinds."""


@pytest.fixture(scope="session")
def demo_media(tmp_path_factory):
    """The video and GUI files of a demo corpus: 12 documents of each kind, 2 long videos."""
    out = tmp_path_factory.mktemp("demo_media")
    run_subcommand(demo_corpus, "--out", out, "--samples-per-kind", 12, "--long-samples", 2, "--seed", 3,
                   "--kinds", *MEDIA_FILES)
    return out
