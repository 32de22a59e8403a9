"""The GPU check's report: parts run by ``launch/gpu_check_part.sh`` on small test files of their own, then the
report built from what they left. Passed, failed, skipped and not run are counted apart, and only a run in which
something passed and nothing failed or was left unrun says PASS."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from benchmarks import gpu_check_report

REPO = Path(__file__).resolve().parents[2]
TESTS = {
    "test_mixed.py": """
        import pytest
        def test_passes(): pass
        def test_fails(): assert 1 == 2, "one is not two"
        def test_skips(): pytest.skip("needs what is not here")
    """,
    "test_slow.py": """
        import time
        def test_first(): pass
        def test_sleeps(): time.sleep(120)
        def test_last(): pass
    """,
    "test_passing.py": """
        import pytest
        def test_one(): pass
        def test_skipped(): pytest.skip("Transformer Engine does not import here")
    """,
    "test_skipping.py": """
        import pytest
        def test_skipped(): pytest.skip("needs a GPU")
    """,
    "test_broken_import.py": """
        import module_the_machine_lacks
        def test_never(): pass
    """,
}
MEASURED = {"seq_len": 8192, "recompute": "none", "step_seconds": 1.0, "tokens_per_second": 8192.0,
            "model_tflops_per_second": 400.0, "mfu": 0.4, "peak_memory_gib": 40.0, "loss": 12.0}


@pytest.fixture
def check(tmp_path):
    """A scratch folder with the test files, an output folder, and ``run(part, budget, *files)`` / ``report(...)``."""
    scratch, out = tmp_path / "scratch", tmp_path / "out"
    scratch.mkdir()
    out.mkdir()
    for name, text in TESTS.items():
        (scratch / name).write_text(textwrap.dedent(text))

    class Check:
        def __init__(self):
            self.out = out

        def run(self, part: str, budget: int, *files: str) -> None:
            env = dict(os.environ, PYTHONPATH=str(REPO))
            subprocess.run(["bash", str(REPO / "launch/gpu_check_part.sh"), part, str(budget), str(scratch),
                            *(str(scratch / name) for name in files)], env=env, check=True, cwd=scratch)
            with open(scratch / "parts.tsv", "a") as parts:
                parts.write((scratch / f"{part}.part").read_text())

        def throughput(self, requested, measured=(), out_of_memory=()) -> None:
            report = {"device": "GPU", "layer_backend": "local", "model": "7B", "parameters": 1,
                      "requested_seq_lens": list(requested), "measurements": list(measured),
                      "out_of_memory": list(out_of_memory)}
            (out / "throughput.json").write_text(json.dumps(report))

        def report(self, transformer_engine="absent: No module named 'transformer_engine'") -> tuple[int, dict, str]:
            status = gpu_check_report.main(["--scratch", str(scratch), "--out", str(out), "--transformer-engine",
                                            transformer_engine, "--seconds", "12"])
            return status, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()

    return Check()


def _outcomes(report: dict) -> dict[str, str]:
    return {case["test"]: case["outcome"] for case in report["tests"]}


def test_passed_failed_and_skipped_are_counted_apart(check):
    check.run("mixed", 60, "test_mixed.py")
    check.throughput([8192], [MEASURED])
    status, report, text = check.report()
    assert status == 1 and not report["pass"]
    assert report["summary"] == {"passed": 1, "failed": 1, "skipped": 1, "not run": 0}
    assert text.splitlines()[0].startswith("GPU check FAIL: 1 passed, 1 failed, 1 skipped, 0 not run;")
    failed = next(case for case in report["tests"] if case["outcome"] == "failed")
    assert failed["test"] == "test_mixed::test_fails" and "one is not two" in failed["reason"]


def test_a_part_out_of_its_budget_keeps_the_tests_it_finished(check):
    check.run("slow", 6, "test_slow.py")
    check.throughput([8192], [MEASURED])
    status, report, _ = check.report()
    assert report["parts"][0]["exit_status"] == 124
    assert _outcomes(report) == {"test_slow::test_first": "passed", "test_slow::test_sleeps": "not run",
                                 "test_slow::test_last": "not run"}
    assert "ran out of its 6 s budget" in report["tests"][1]["reason"]
    assert status == 1


def test_a_file_that_cannot_import_is_a_failure(check):
    check.run("broken", 60, "test_broken_import.py", "test_passing.py")
    check.throughput([8192], [MEASURED])
    status, report, _ = check.report()
    broken = next(case for case in report["tests"] if case["test"] == "test_broken_import")
    assert broken["outcome"] == "failed" and "module_the_machine_lacks" in broken["reason"]
    assert status == 1


def test_a_part_that_collects_nothing_is_a_failure(check, tmp_path):
    (tmp_path / "scratch" / "conftest.py").write_text("import module_the_machine_lacks\n")
    check.run("conftest", 60, "test_passing.py")
    check.throughput([8192], [MEASURED])
    status, report, text = check.report()
    assert report["tests"] == [] and "before it collected any test" in report["part_errors"][0]
    assert status == 1 and "**part conftest: pytest exited 4" in text


def test_only_skips_is_a_failure(check):
    check.run("skips", 60, "test_skipping.py")
    check.throughput([8192], [MEASURED])
    assert check.report()[0] == 1


def test_passes_and_skips_pass_and_the_first_line_says_whether_te_was_tested(check):
    check.run("passing", 60, "test_passing.py")
    check.throughput([8192, 32768], [MEASURED], [{"seq_len": 32768, "recompute": "full", "error": "CUDA out of memory"}])
    status, report, text = check.report()
    assert status == 0 and report["pass"]
    first = text.splitlines()[0]
    assert first.startswith("GPU check PASS: 1 passed, 0 failed, 1 skipped, 0 not run;")
    assert "TE not tested (absent: No module named 'transformer_engine')" in first
    assert "| 32768 | full | out of memory |" in text
    assert "TE tested;" in check.report(transformer_engine="present")[2].splitlines()[0]
    suites = ElementTree.parse(check.out / "gpu_tests.xml").getroot().findall("testsuite")
    assert [suite.get("name") for suite in suites] == ["passing"] and len(suites[0].findall("testcase")) == 2


def test_a_benchmark_that_stopped_before_a_length_is_a_failure(check):
    check.run("passing", 60, "test_passing.py")
    check.throughput([8192, 32768], [MEASURED])
    status, _, text = check.report()
    assert status == 1 and "not measured (the benchmark stopped first, throughput.log): 32768 tokens" in text
