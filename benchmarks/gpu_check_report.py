"""The report of ``launch/gpu_check.sh``: ``gpu_check.json``, ``gpu_check.md`` (the table it prints) and one JUnit
file of every test, from what the check's parts left in its scratch folder and the throughput benchmark's JSON.

    python -m benchmarks.gpu_check_report --scratch /tmp/mvl_gpu_check.XXXX --out gpu_check_out \\
        --transformer-engine "absent: No module named 'transformer_engine'" --seconds 412

The check's tests run in parts, each a pytest process with a time budget; ``SCRATCH/parts.tsv`` has a line per part
(name, budget in seconds, pytest's exit status, seconds taken), and each part left ``NAME.xml`` (its JUnit file) and
``NAME.collected`` (the node ids it collected). A test is passed, failed, skipped, or not run: collected but never
reported, because its part ran out of its budget (SIGINT lets pytest write what finished) or died.

The first line says PASS or FAIL, the counts apart, and whether Transformer Engine was tested. Exits 0 on PASS:
some test passed, none failed or was left unrun, every part collected, and every length the benchmark was asked for
was measured or found not to fit; 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from benchmarks.gpu_throughput import table as throughput_table

OUTCOMES = ("passed", "failed", "skipped", "not run")
TIMED_OUT = (124, 137)
"""Exit statuses of ``timeout`` when a part ran past its budget."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Part:
    """One pytest process of the check, as ``parts.tsv`` records it."""

    name: str
    budget_seconds: int
    exit_status: int
    seconds: int


def read_parts(scratch: Path) -> list[Part]:
    path = scratch / "parts.tsv"
    if not path.exists():
        return []
    parts = []
    for line in path.read_text().splitlines():
        name, budget, status, seconds = line.split("\t")
        parts.append(Part(name=name, budget_seconds=int(budget), exit_status=int(status), seconds=int(seconds)))
    return parts


def junit_id(node_id: str) -> str:
    """The ``classname::name`` pytest's JUnit file gives the test ``node_id`` (``tests/a/b.py::C::test[x]``)."""
    path, *names = node_id.split("::")
    module = path.removesuffix(".py").replace("/", ".")
    return ".".join([module, *names[:-1]]) + "::" + names[-1]


def read_junit(path: Path) -> dict[str, dict]:
    """Each reported test case by ``classname::name``: outcome, seconds, and unless it passed the first line of why.
    A case without a name (the one SIGINT interrupted) is left out: it did not finish."""
    if not path.exists():
        return {}
    cases = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        if not case.get("name"):
            continue
        outcome, reason = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                lines = (element.get("message") or element.text or "").strip().splitlines()
                reason = lines[0] if lines else tag
                errors = [line[1:].strip() for line in (element.text or "").splitlines() if line.startswith("E ")]
                if tag == "error" and errors:
                    reason += f": {errors[-1]}"
                reason = reason[:200]
        cases[f"{case.get('classname', '')}::{case.get('name')}"] = {
            "outcome": outcome, "seconds": round(float(case.get("time", 0)), 1), "reason": reason}
    return cases


def _short(case_id: str) -> str:
    """``test_module::test_name`` of a JUnit ``classname::name`` (a collection error has no class name)."""
    return case_id.rsplit(".", 1)[-1].removeprefix("::")


def part_results(scratch: Path, part: Part) -> tuple[list[dict], str | None]:
    """The part's tests in collection order with their outcomes, and what went wrong with the part itself (None
    when it collected and every collected test reported)."""
    reported = read_junit(scratch / f"{part.name}.xml")
    collected_file = scratch / f"{part.name}.collected"
    if not collected_file.exists():
        return [], f"part {part.name}: pytest exited {part.exit_status} before it collected any test (gpu_tests.log)"
    if part.exit_status in TIMED_OUT:
        why_unrun = f"not finished: part {part.name} ran out of its {part.budget_seconds} s budget"
    else:
        why_unrun = f"not reported: part {part.name}'s pytest exited {part.exit_status} (gpu_tests.log)"
    tests = []
    collected = [junit_id(node_id) for node_id in collected_file.read_text().split()]
    for case_id in collected:
        case = reported.get(case_id, {"outcome": "not run", "seconds": 0.0, "reason": why_unrun})
        tests.append({"test": _short(case_id), "part": part.name, **case})
    # A file that fails to import is reported (as an error) but never collected.
    tests += [{"test": _short(case_id), "part": part.name, **case}
              for case_id, case in reported.items() if case_id not in collected]
    return tests, None


def merged_junit(scratch: Path, parts: list[Part]) -> ElementTree.ElementTree:
    """One JUnit file holding every part's test suites."""
    root = ElementTree.Element("testsuites", name="gpu_check")
    for part in parts:
        path = scratch / f"{part.name}.xml"
        if path.exists():
            for suite in ElementTree.parse(path).getroot().iter("testsuite"):
                suite.set("name", part.name)
                root.append(suite)
    return ElementTree.ElementTree(root)


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


def throughput_gaps(throughput: dict | None) -> list[int]:
    """Sequence lengths the benchmark was asked for and neither measured nor found not to fit."""
    if throughput is None:
        return []
    done = {m["seq_len"] for m in throughput["measurements"]} | {m["seq_len"] for m in throughput["out_of_memory"]}
    return [length for length in throughput["requested_seq_lens"] if length not in done]


def verdict(report: dict) -> bool:
    summary, throughput = report["summary"], report["throughput"]
    tests_ok = summary["passed"] > 0 and summary["failed"] == 0 and summary["not run"] == 0 and not report["part_errors"]
    return tests_ok and throughput is not None and not throughput_gaps(throughput)


def headline(report: dict) -> str:
    """The report's first line: the verdict, the counts apart, Transformer Engine, the machine and the time."""
    summary, env = report["summary"], report["environment"]
    counts = ", ".join(f"{summary[outcome]} {outcome}" for outcome in OUTCOMES)
    te = report["transformer_engine"]
    te_words = "TE tested" if te == "present" else f"TE not tested ({te}): only the local layers ran"
    where = "a CPU rehearsal (its figures say nothing about a GPU)" if report["rehearsal"] else env["device"]
    return f"GPU check {'PASS' if report['pass'] else 'FAIL'}: {counts}; {te_words}; on {where}, {report['seconds']:.0f} s"


def report_table(report: dict) -> str:
    env = report["environment"]
    lines = [
        headline(report),
        "",
        f"torch {env['torch']} (CUDA {env['cuda']}), Python {env['python']}, megatron-core {env['megatron_core']}, "
        f"transformers {env['transformers']}, Transformer Engine {env['transformer_engine'] or 'absent'}",
        "",
        "| part | budget (s) | took (s) | pytest exit |",
        "|---|---|---|---|",
    ]
    lines += [f"| {p['name']} | {p['budget_seconds']} | {p['seconds']} | {p['exit_status']} |" for p in report["parts"]]
    lines += ["", *(f"**{error}**" for error in report["part_errors"])]
    lines += ["", "| test | outcome | s | note |", "|---|---|---|---|"]
    lines += [f"| {c['test']} | {c['outcome']} | {c['seconds']} | {c['reason']} |" for c in report["tests"]]
    lines.append("")
    if report["throughput"] is None:
        lines.append("throughput benchmark: wrote nothing (throughput.log)")
    else:
        lines.append(throughput_table(report["throughput"]))
        gaps = throughput_gaps(report["throughput"])
        if gaps:
            lines.append(f"\nnot measured (the benchmark stopped first, throughput.log): {', '.join(map(str, gaps))} tokens")
    return "\n".join(lines)


def build_report(*, scratch: Path, throughput_path: Path, transformer_engine: str, seconds: float,
                 rehearsal: bool) -> dict:
    parts = read_parts(scratch)
    tests, part_errors = [], []
    for part in parts:
        part_tests, error = part_results(scratch, part)
        tests += part_tests
        if error:
            part_errors.append(error)
    if not parts:
        part_errors.append(f"no test part ran: {scratch / 'parts.tsv'} is missing")
    report = {
        "environment": environment(),
        "rehearsal": rehearsal,
        "transformer_engine": transformer_engine,
        "seconds": seconds,
        "parts": [dataclasses.asdict(part) for part in parts],
        "part_errors": part_errors,
        "tests": tests,
        "summary": {outcome: sum(c["outcome"] == outcome for c in tests) for outcome in OUTCOMES},
        "throughput": json.loads(throughput_path.read_text()) if throughput_path.exists() else None,
    }
    report["pass"] = verdict(report)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", required=True, type=Path, help="the check's scratch folder (parts.tsv, NAME.xml)")
    parser.add_argument("--out", required=True, type=Path,
                        help="where gpu_check.json, gpu_check.md and gpu_tests.xml go (throughput.json is read here)")
    parser.add_argument("--transformer-engine", required=True,
                        help="'present', or why it was not tested ('absent: REASON')")
    parser.add_argument("--seconds", type=float, required=True, help="how long the whole check took")
    parser.add_argument("--rehearsal", action="store_true", help="the tests ran on the CPU (MVL_GPU_TESTS_DEVICE=cpu)")
    args = parser.parse_args(argv)
    report = build_report(scratch=args.scratch, throughput_path=args.out / "throughput.json",
                          transformer_engine=args.transformer_engine, seconds=args.seconds, rehearsal=args.rehearsal)
    parts = [Part(**part) for part in report["parts"]]
    merged_junit(args.scratch, parts).write(args.out / "gpu_tests.xml", encoding="utf-8", xml_declaration=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    text = report_table(report)
    (args.out / "gpu_check.md").write_text(text + "\n")
    print(text)
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
