"""The per-stage metrics file: where training writes it and how to read it back.

Kept apart from ``metrics_log`` (which writes it during a run) so that readers such as the loss plot
do not import megatron-core.
"""

from __future__ import annotations

import json
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


def read_metrics(log_dir: str | Path, event: str = "train") -> list[dict]:
    """The records of ``event`` in ``LOG_DIR/metrics.jsonl``, in order."""
    path = Path(log_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [record for record in records if record["event"] == event]
