"""How a run of a stage ended, as rank 0 reports it to its launcher.

When ``MVL_RUN_OUTCOME`` names a file, rank 0 writes it (atomically) as the run's last act, once every
checkpoint is written: the stage, whether it is complete or stopped (and why), the iteration it stopped at,
and the checkpoint holding that iteration, if one does. A launcher cannot tell this from exit codes (torchrun
exits non-zero after forwarding a signal, also when every rank saved and exited 0), so the batch script
reads it: it requeues a stopped job only when the stop's checkpoint is confirmed, and fails loudly otherwise.

    python -m megatron_vl.training.run_outcome FILE

prints one line and exits 0 (stopped, checkpoint saved: resume it), 3 (complete: nothing left to do) or 1
(no confirmed checkpoint of the stop, or no outcome at all: the run failed or was killed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from megatron_vl.files import write_atomically

OUTCOME_ENVIRONMENT = "MVL_RUN_OUTCOME"
RESUMABLE, COMPLETE, UNCONFIRMED = 0, 3, 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """The end of one run of a stage."""

    stage: str
    """The recipe's name."""
    ending: str
    """``complete`` (the token budget is trained) or ``stopped`` (a signal, or another hook, stopped it)."""
    reason: str | None
    """Why it stopped (``SIGUSR1 received``); None when complete."""
    iteration: int
    """The last iteration trained."""
    train_iterations: int
    """The stage's iterations."""
    checkpoint: str | None
    """The checkpoint directory holding ``iteration``, or None when that iteration was not saved."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"

    def describe(self) -> str:
        if self.ending == "complete":
            state = f"complete at iteration {self.iteration}/{self.train_iterations}"
        else:
            state = f"stopped ({self.reason}) at iteration {self.iteration}/{self.train_iterations}"
        saved = f"checkpoint {self.checkpoint}" if self.checkpoint else f"iteration {self.iteration} NOT saved"
        return f"{self.stage} {state}; {saved}"


def write_run_outcome(path: str | Path, outcome: RunOutcome) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, outcome.to_json().encode())


def read_run_outcome(path: str | Path) -> RunOutcome | None:
    """The outcome in ``path``; None when the run wrote none."""
    path = Path(path)
    if not path.is_file():
        return None
    return RunOutcome(**json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m megatron_vl.training.run_outcome", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help=f"the file the launcher named in {OUTCOME_ENVIRONMENT}")
    path = parser.parse_args(argv).file
    outcome = read_run_outcome(path)
    if outcome is None:
        print(f"the ranks wrote no outcome to {path}: they failed or were killed before their last save finished")
        return UNCONFIRMED
    print(outcome.describe())
    if outcome.checkpoint is None:
        return UNCONFIRMED
    return COMPLETE if outcome.ending == "complete" else RESUMABLE


if __name__ == "__main__":
    sys.exit(main())
