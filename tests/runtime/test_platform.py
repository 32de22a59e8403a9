"""The layer backend is a setting: auto picks Transformer Engine on a GPU and refuses to fall back silently."""

from __future__ import annotations

import pytest

from megatron_vl.runtime import platform
from megatron_vl.runtime.platform import choose_layer_backend, detect_platform


def test_auto_is_transformer_engine_on_a_gpu_that_has_it_and_local_on_the_cpu():
    assert choose_layer_backend("auto", on_gpu=True, transformer_engine_error=None) == "transformer_engine"
    assert choose_layer_backend("auto", on_gpu=False, transformer_engine_error=None) == "local"


def test_auto_on_a_gpu_without_transformer_engine_is_an_error_that_names_both_fixes():
    with pytest.raises(ValueError) as error:
        choose_layer_backend("auto", on_gpu=True, transformer_engine_error="No module named 'transformer_engine'")
    message = str(error.value)
    assert "No module named 'transformer_engine'" in message
    assert "pip install -e '.[gpu]'" in message and "--layer-backend local" in message


def test_explicit_settings():
    assert choose_layer_backend("local", on_gpu=True, transformer_engine_error="missing") == "local"
    with pytest.raises(ValueError, match="needs a GPU"):
        choose_layer_backend("transformer_engine", on_gpu=False, transformer_engine_error=None)
    with pytest.raises(ValueError, match="does not import"):
        choose_layer_backend("transformer_engine", on_gpu=True, transformer_engine_error="missing")
    with pytest.raises(ValueError, match="choose one of auto, transformer_engine, local"):
        choose_layer_backend("te", on_gpu=True, transformer_engine_error=None)


def test_detect_platform_reads_the_setting_from_the_environment(monkeypatch):
    monkeypatch.setenv(platform.LAYER_BACKEND_ENVIRONMENT, "transformer_engine")
    with pytest.raises(ValueError, match="needs a GPU"):
        detect_platform()
    assert detect_platform("local").layer_backend == "local"


def test_detect_platform_on_a_gpu_without_transformer_engine(monkeypatch):
    import torch

    monkeypatch.delenv(platform.LAYER_BACKEND_ENVIRONMENT, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H200")
    monkeypatch.setattr(platform, "transformer_engine_error", lambda: "No module named 'transformer_engine'")
    with pytest.raises(ValueError, match="Transformer Engine does not import"):
        detect_platform()
    chosen = detect_platform("local")
    assert (chosen.device, chosen.layer_backend, chosen.peak_flops) == ("cuda", "local", 989e12)
