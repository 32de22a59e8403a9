"""What makes two pack runs the same pack, so that a rerun continues an interrupted one or does nothing.

The identity of a pack is its inputs (each ingest output's path and manifest sha256), the tokenizer's
fingerprint, seq_len and the output-deciding options. It is recorded in ``.pack-work/settings.json``
while the pack runs, and in the manifest once it is done; a rerun with another identity is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from megatron_vl.config.serialization import config_from_dict
from megatron_vl.data.packed_manifest import MANIFEST_NAME, PackedManifest, PackSettings
from megatron_vl.files import write_atomically

WORK_DIR = ".pack-work"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackInput:
    """One input of a pack, as its identity names it."""

    path: str
    """The ingest output's directory (absolute)."""
    ingest_manifest_sha256: str
    """sha256 of its ``ingest_manifest.json``."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackIdentity:
    """Everything that decides a pack's output bytes."""

    seq_len: int
    """Tokens per packed sequence."""
    tokenizer_fingerprint: str
    """The tokenizer's fingerprint."""
    pack_settings: PackSettings
    """seed, window, shard_size, long_doc."""
    sources: list[PackInput]
    """The inputs, in order."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PackIdentity":
        return config_from_dict(cls, json.loads(text), where="the pack's settings")

    @classmethod
    def of_manifest(cls, manifest: PackedManifest) -> "PackIdentity":
        return cls(
            seq_len=manifest.seq_len, tokenizer_fingerprint=manifest.tokenizer_fingerprint,
            pack_settings=manifest.pack_settings,
            sources=[PackInput(path=s.path, ingest_manifest_sha256=s.ingest_manifest_sha256) for s in manifest.sources],
        )


def already_packed(out: Path, identity: PackIdentity) -> bool:
    """Whether ``out`` holds this pack finished; refuses a finished other pack."""
    if not (out / MANIFEST_NAME).exists():
        return False
    _refuse_another(out, PackIdentity.of_manifest(PackedManifest.load(out)), identity)
    return True


def prepare_work_dir(out: Path, identity: PackIdentity) -> Path:
    """The work directory of this pack in ``out``: the one of an interrupted run of it, or a new one."""
    work = out / WORK_DIR
    settings_path = work / "settings.json"
    if settings_path.exists():
        _refuse_another(out, PackIdentity.from_json(settings_path.read_text()), identity)
    else:
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"--out {out} is not empty and holds no pack in progress; choose an empty or new directory")
        (work / "tokenized").mkdir(parents=True, exist_ok=True)
        (work / "shards").mkdir(exist_ok=True)
        write_atomically(settings_path, identity.to_json().encode())
    return work


def _refuse_another(out: Path, recorded: PackIdentity, wanted: PackIdentity) -> None:
    differing = [
        f"{field.name}: {getattr(recorded, field.name)!r} there, {getattr(wanted, field.name)!r} now"
        for field in dataclasses.fields(PackIdentity)
        if getattr(recorded, field.name) != getattr(wanted, field.name)
    ]
    if differing:
        raise ValueError(
            f"--out {out} holds a pack made with other inputs or options ({'; '.join(differing)}); rerun with the "
            "original options to continue it, or choose a new --out"
        )
