"""The report of ``launch/gpu_check.sh``: ``gpu_check.json`` and a Markdown table from the GPU tests' JUnit file
and the throughput benchmark's JSON, with the machine and the packages they ran on.

    python -m benchmarks.gpu_check_report --out gpu_check_out --transformer-engine "installed" --seconds 412

Exits 0 when every GPU test passed or was skipped and the benchmark ran, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from benchmarks.gpu_throughput import table as throughput_table


def read_junit(path: Path) -> list[dict]:
    """Each test case's name, outcome (passed / failed / skipped) and, unless it passed, the first line of why."""
    if not path.exists():
        return []
    cases = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome, reason = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                reason = (element.get("message") or element.text or "").strip().splitlines()[0][:200]
        cases.append({"test": f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}",
                      "outcome": outcome, "seconds": round(float(case.get("time", 0)), 1), "reason": reason})
    return cases


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    import torch

    return {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "megatron_core": _version("megatron-core"),
        "transformers": _version("transformers"),
        "transformer_engine": _version("transformer_engine") or _version("transformer-engine"),
    }


def report_table(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"GPU check on {env['device']}: torch {env['torch']} (CUDA {env['cuda']}), megatron-core {env['megatron_core']}, "
        f"transformers {env['transformers']}, Transformer Engine: {report['transformer_engine']}; "
        f"{report['seconds']:.0f} s in all",
        "",
        "| test | outcome | s | note |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c['test']} | {c['outcome']} | {c['seconds']} | {c['reason']} |" for c in report["tests"]]
    summary = report["summary"]
    lines += ["", f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped", ""]
    if report["throughput"] is not None:
        lines.append(throughput_table(report["throughput"]))
    else:
        lines.append("throughput benchmark: did not finish (see throughput.log)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="gpu_check.sh's output folder")
    parser.add_argument("--transformer-engine", required=True, help="what became of Transformer Engine, in words")
    parser.add_argument("--seconds", type=float, required=True, help="how long the whole check took")
    args = parser.parse_args(argv)
    tests = read_junit(args.out / "gpu_tests.xml")
    throughput_path = args.out / "throughput.json"
    report = {
        "environment": environment(),
        "transformer_engine": args.transformer_engine,
        "seconds": args.seconds,
        "tests": tests,
        "summary": {outcome: sum(c["outcome"] == outcome for c in tests) for outcome in ("passed", "failed", "skipped")},
        "throughput": json.loads(throughput_path.read_text()) if throughput_path.exists() else None,
    }
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    text = report_table(report)
    (args.out / "gpu_check.md").write_text(text + "\n")
    print(text)
    ran_tests = bool(tests) and report["summary"]["failed"] == 0
    return 0 if ran_tests and report["throughput"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
