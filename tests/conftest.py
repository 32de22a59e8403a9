import os
import warnings

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
warnings.filterwarnings("ignore", message=".*(Apex|Transformer Engine).*")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """DATA_ROOT with a tokenizer and 128-token packs of captions, interleaved documents and a held-out set
    (shared by the training and launch tests)."""
    from tests.training.training_data import build_data_root

    return build_data_root(tmp_path_factory.mktemp("data_root"))
