"""``--partition I/N``: which inputs one of N preparation jobs takes, and where it writes.

The inputs (after expansion: directories searched, patterns and URLs listed) are sorted and
partition I takes every N-th, starting at the I-th: ``sorted(inputs)[I::N]``. The split is
disjoint, covers every input, and depends only on the set of inputs and N, not on the order they
were given or listed in, so a rerun takes the same inputs. A partition writes under
``OUT/partition-IIIII-of-NNNNN/``; ``merge`` joins the N folders into one dataset.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

from megatron_vl.files import write_atomically

FOLDER_PATTERN = re.compile(r"partition-(\d{5})-of-(\d{5})")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Partition:
    """Partition ``index`` of ``count``."""

    index: int
    """Which partition, 0 <= index < count."""
    count: int
    """How many partitions the inputs are split into."""

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"partition {self.index}/{self.count} does not exist: --partition I/N needs 0 <= I < N "
                f"(e.g. 0/{max(self.count, 1)} for the first of {max(self.count, 1)})"
            )

    @classmethod
    def parse(cls, text: str) -> "Partition":
        """``"3/8"`` -> partition 3 of 8."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise ValueError(f"--partition {text!r} is not I/N (e.g. 3/8: the fourth of 8 partitions)")
        return cls(index=int(match.group(1)), count=int(match.group(2)))

    @property
    def folder(self) -> str:
        """Name of the folder the partition writes into."""
        return f"partition-{self.index:05d}-of-{self.count:05d}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, inputs: list[str]) -> list[str]:
        """This partition's share of the expanded ``inputs``, in sorted order."""
        if len(set(inputs)) != len(inputs):
            raise ValueError("an input is listed twice; every input must be named once to be split into partitions")
        return sorted(inputs)[self.index :: self.count]


def partition_folders(directory: str | Path) -> list[tuple[Partition, Path]]:
    """Every partition folder of ``directory``, in order, checked to be all N partitions of one split."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} does not exist; run the partitions' jobs first")
    found = []
    for path in sorted(directory.iterdir()):
        match = FOLDER_PATTERN.fullmatch(path.name)
        if match is not None and path.is_dir():
            found.append((Partition(index=int(match.group(1)), count=int(match.group(2))), path))
    if not found:
        raise ValueError(f"{directory} holds no partition-IIIII-of-NNNNN folders; run ingest / pack with --partition I/N")
    counts = sorted({partition.count for partition, _ in found})
    if len(counts) > 1:
        raise ValueError(f"{directory} holds partitions of splits into {counts} parts; keep one split, remove the others")
    count = counts[0]
    missing = sorted(set(range(count)) - {partition.index for partition, _ in found})
    if missing:
        names = ", ".join(Partition(index=i, count=count).folder for i in missing)
        raise ValueError(f"{directory} lacks {names}: run those partitions (--partition I/{count}) first")
    return found


MARKER_NAME = "partition.json"


def finished(folder: str | Path, identity: dict) -> bool:
    """Whether ``folder`` holds this partition finished (its marker is written last, atomically).

    A folder without the marker is a half-written partition (a killed job): it is removed, to be
    redone from scratch. A marker of other inputs or settings is refused, never overwritten."""
    folder = Path(folder)
    marker = folder / MARKER_NAME
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded != identity:
            differing = sorted(key for key in recorded.keys() | identity.keys() if recorded.get(key) != identity.get(key))
            raise ValueError(
                f"{folder} holds this partition made with other inputs or settings (differing: {', '.join(differing)}); "
                "rerun with the original ones, or remove the folder (or choose another --out) to redo it"
            )
        return True
    if folder.exists():
        print(f"{folder} is half-written (no {MARKER_NAME}): redoing it from scratch", file=sys.stderr)
        shutil.rmtree(folder)
    return False


def mark_finished(folder: str | Path, identity: dict) -> None:
    """Record that ``folder`` is complete; call after every other file is written."""
    write_atomically(Path(folder) / MARKER_NAME, (json.dumps(identity, indent=1, sort_keys=True) + "\n").encode())


def require_finished(directory: str | Path) -> list[tuple[Partition, Path]]:
    """All partition folders of ``directory``, each finished; otherwise a ValueError naming the first unfinished."""
    found = partition_folders(directory)
    unfinished = [path.name for _, path in found if not (path / MARKER_NAME).is_file()]
    if unfinished:
        raise ValueError(
            f"partitions {', '.join(unfinished)} of {directory} are unfinished (no {MARKER_NAME}): their job was "
            "killed or is still running; rerun the same command for them (it redoes them) and then this one"
        )
    return found


EMPTY_NAME = "empty_partition.json"


def mark_empty(folder: str | Path, dropped: dict[str, int]) -> None:
    """Record that ``folder``'s partition has no document left to pack (all were duplicates, dropped, or its
    inputs had none), with the counts of those dropped by pack; ``merge`` skips it and counts it."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_atomically(Path(folder) / EMPTY_NAME, (json.dumps({"dropped": dropped}, sort_keys=True) + "\n").encode())


def is_empty(folder: str | Path) -> bool:
    return (Path(folder) / EMPTY_NAME).is_file()


def empty_partition_dropped(folder: str | Path) -> dict[str, int]:
    """The documents pack dropped from the empty partition ``folder``, per reason."""
    return json.loads((Path(folder) / EMPTY_NAME).read_text())["dropped"]
