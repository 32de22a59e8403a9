import pytest

from tests.multirank import run_ranks
from tests.training.init_checkpoint import write_init_checkpoint


@pytest.fixture(scope="session")
def init_checkpoint(data_root, tmp_path_factory):
    """A model-only checkpoint of ``tiny`` as ``checkpoints_tools.from_hf`` writes it (TP=1), for runs that start
    from given weights."""
    root = tmp_path_factory.mktemp("from_hf")
    run_ranks(write_init_checkpoint, 1, str(root), str(data_root / "tokenizer"), 11)
    return root
