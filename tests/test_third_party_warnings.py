import subprocess
import sys

import pytest

SCRIPT = """
import warnings
from megatron_vl.third_party_warnings import silence_known_third_party_warnings
silence_known_third_party_warnings()
import megatron.core.optimizer, megatron.core.models.gpt
warnings.warn("a warning of our own still shows")
"""


def test_megatron_import_is_quiet_but_other_warnings_show():
    result = subprocess.run([sys.executable, "-W", "default", "-c", SCRIPT], capture_output=True, text=True, check=True)
    assert "not installed" not in result.stderr, result.stderr
    assert "a warning of our own still shows" in result.stderr


ENTRY_POINTS = (
    "checkpoints_tools.to_hf",
    "checkpoints_tools.from_hf",
    "checkpoints_tools.verify",
    "checkpoints_tools.generate",
    "megatron_vl.training.train",
    "megatron_vl.training.loss_plot",
    "data_prep",
)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_entry_point_help_prints_no_warning(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True
    )
    assert "usage:" in result.stdout
    assert result.stderr == "", result.stderr
