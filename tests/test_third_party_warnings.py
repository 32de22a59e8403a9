import subprocess
import sys

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
