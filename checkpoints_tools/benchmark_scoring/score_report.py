"""A benchmark file's results as JSON (score, per-category scores, per-row predictions) and as a printed table."""

from __future__ import annotations

from pathlib import Path

from checkpoints_tools.benchmark_scoring.benchmark_rows import GROUNDING, Benchmark


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def file_result(benchmark: Benchmark, predictions: list[str], row_scores: list[dict]) -> dict:
    """``path``, ``metric``, ``rows``, ``score`` (mean of the rows'; grounding adds ``mean_iou``), ``categories``
    (category -> rows and score, when the file has categories) and ``predictions`` (one per row)."""
    rows = []
    for row, prediction, scored in zip(benchmark.rows, predictions, row_scores):
        rows.append({"index": row.index, "category": row.category, "prediction": prediction, "answers": list(row.answers),
                     **({"boxes": [list(box) for box in row.boxes]} if row.boxes else {}), **scored})
    categories: dict[str, list[float]] = {}
    for row in rows:
        if row["category"]:
            categories.setdefault(row["category"], []).append(row["score"])
    result = {
        "path": str(benchmark.path),
        "metric": benchmark.metric,
        "rows": len(rows),
        "score": _mean([row["score"] for row in rows]),
        "categories": {name: {"rows": len(scores), "score": _mean(scores)} for name, scores in sorted(categories.items())},
        "predictions": rows,
    }
    if benchmark.metric == GROUNDING:
        result["mean_iou"] = _mean([row["iou"] for row in rows])
    return result


def score_table(results: list[dict]) -> str:
    """One line per file (category ``(all)``) and per category of it: rows and score."""
    lines = [("file", "metric", "category", "rows", "score")]
    for result in results:
        name = Path(result["path"]).name
        score = f"{result['score']:.4f}" + (f" (mean IoU {result['mean_iou']:.4f})" if "mean_iou" in result else "")
        lines.append((name, result["metric"], "(all)", str(result["rows"]), score))
        for category, values in result["categories"].items():
            lines.append(("", "", category, str(values["rows"]), f"{values['score']:.4f}"))
    widths = [max(len(line[column]) for line in lines) for column in range(4)]
    formatted = []
    for line in lines:
        cells = [cell.rjust(width) if column == 3 else cell.ljust(width)
                 for column, (cell, width) in enumerate(zip(line, widths))]
        formatted.append("  ".join(cells + [line[4]]))
    return "\n".join(formatted)
