"""Where each tensor of the HF model comes from when importing: one Qwen2.5-VL / MiMo-VL checkpoint, or parts
(a Qwen2.5-VL vision tower, a text-only Qwen2 / MiMo-7B-Base LLM, a freshly initialised projector).

A ``WeightSource`` maps every in-memory HF name (``models/hf_mapping.py``'s) to a loader that reads that one
tensor when called, and its shape; nothing is read until the converter asks. Tensors a source has but the
model does not use are either refused by ``check`` (an unknown tensor means another model) or, where that is
the point of the import, left out and counted in ``notes``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import torch

from checkpoints_tools.hf_tensor_names import memory_name
from checkpoints_tools.safetensors_files import SafetensorsCheckpoint

_MTP = re.compile(r"model\.language_model\.mtp_layers\.(\d+)\.")
_PROJECTOR = "model.visual.merger."


@dataclasses.dataclass
class WeightSource:
    loaders: dict[str, Callable[[], torch.Tensor]] = dataclasses.field(default_factory=dict)
    """In-memory HF name -> a function reading that tensor."""
    shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    origin: dict[str, str] = dataclasses.field(default_factory=dict)
    """In-memory HF name -> where it is read from (file and name there), for error messages."""
    notes: list[str] = dataclasses.field(default_factory=list)
    """What was left out or made up, to report."""
    unknown: list[str] = dataclasses.field(default_factory=list)
    """Stored tensors the model does not have: ``check`` refuses them (after shapes were compared)."""
    unknown_hint: str = ""
    """What to do about unknown tensors."""

    def add_file_tensor(self, name: str, checkpoint: SafetensorsCheckpoint, stored: str) -> None:
        if name in self.loaders:
            raise ValueError(f"{self.origin[name]} and {checkpoint.entries[stored].file}:{stored} both give {name}")
        self.loaders[name] = lambda: checkpoint.get(stored)
        self.shapes[name] = checkpoint.shape(stored)
        self.origin[name] = f"{checkpoint.entries[stored].file}:{stored}"

    def check(self, needed: list[str], what: str) -> None:
        """Refuse stored tensors the model lacks and model tensors the source lacks."""
        if self.unknown:
            raise ValueError(
                f"{what} holds {len(self.unknown)} tensor(s) the model of its config.json does not have, e.g. "
                f"{self.unknown[:3]}; {self.unknown_hint}"
            )
        missing = [name for name in needed if name not in self.loaders]
        if missing:
            raise ValueError(
                f"{what} lacks {len(missing)} tensor(s) the model needs, e.g. {missing[:3]}; check that it is a "
                "complete checkpoint of the kind this option expects"
            )


def whole_model(checkpoint: SafetensorsCheckpoint, needed: list[str]) -> WeightSource:
    """Every tensor from one Qwen2.5-VL / MiMo-VL checkpoint (either naming layout); an unknown tensor is an error."""
    source = WeightSource(unknown_hint="it is another model (for a ViT plus a text-only LLM use --vision and --llm)")
    wanted = set(needed)
    for stored in checkpoint.names():
        name = memory_name(stored)
        if name in wanted:
            source.add_file_tensor(name, checkpoint, stored)
        else:
            source.unknown.append(stored)
    return source


def from_parts(
    vision: SafetensorsCheckpoint,
    llm: SafetensorsCheckpoint,
    needed: list[str],
    expected_shapes: dict[str, tuple[int, ...]],
    *,
    tied_embeddings: bool,
    init_std: float,
    seed: int,
) -> WeightSource:
    """The ViT from a Qwen2.5-VL checkpoint, the LLM from a text-only one, the projector freshly initialised."""
    source = WeightSource(unknown_hint="pass a Qwen2.5-VL checkpoint as --vision and a Qwen2 / MiMo-7B-Base one as --llm")
    wanted = set(needed)
    merger, language = 0, 0
    for stored in vision.names():
        name = memory_name(stored)
        if name.startswith(_PROJECTOR):
            merger += 1
        elif not name.startswith("model.visual."):
            language += 1
        elif name in wanted:
            source.add_file_tensor(name, vision, stored)
        else:
            source.unknown.append(stored)
    source.notes.append(
        f"took the ViT of {vision.directory}, leaving out its merger ({merger} tensors; the projector starts fresh) "
        f"and its LLM ({language} tensors)"
    )

    mtp_layers, mtp_tensors = set(), 0
    for stored in llm.names():
        name = memory_name(stored)
        mtp = _MTP.match(name)
        if mtp:
            mtp_layers.add(int(mtp.group(1)))
            mtp_tensors += 1
        elif name in wanted and (name.startswith("model.language_model.") or name == "lm_head.weight"):
            source.add_file_tensor(name, llm, stored)
        else:
            source.unknown.append(stored)
    if mtp_tensors:
        source.notes.append(
            f"left out {len(mtp_layers)} multi-token-prediction layer(s) ({mtp_tensors} tensors) of {llm.directory}: "
            "this model has no MTP head"
        )
    embedding, head = "model.language_model.embed_tokens.weight", "lm_head.weight"
    if head not in source.loaders and tied_embeddings and embedding in source.loaders:
        source.loaders[head], source.shapes[head] = source.loaders[embedding], source.shapes[embedding]
        source.origin[head] = source.origin[embedding] + " (tied)"
        source.notes.append("the LLM ties its output layer to its embedding: the output layer starts as a copy of it")

    projector = [name for name in needed if name.startswith(_PROJECTOR)]
    for name in projector:
        source.loaders[name] = _fresh(name, expected_shapes[name], init_std, seed)
        source.shapes[name] = expected_shapes[name]
        source.origin[name] = "fresh projector"
    source.notes.append(
        f"initialised the projector's {len(projector)} tensors: normal(0, {init_std}) weights, zero biases, unit norm "
        f"(seed {seed})"
    )
    return source


def _fresh(name: str, shape: tuple[int, ...], std: float, seed: int) -> Callable[[], torch.Tensor]:
    def make() -> torch.Tensor:
        if name.endswith("ln_q.weight"):
            return torch.ones(shape)
        if name.endswith(".bias"):
            return torch.zeros(shape)
        # Seeded by the name too, so each tensor is the same whatever order it is made in.
        generator = torch.Generator().manual_seed(seed * 1_000_003 + sum(map(ord, name)))
        return torch.randn(shape, generator=generator) * std

    return make
