"""``launch/gpu_check.sh`` rehearsed on the CPU (``MVL_GPU_TESTS_DEVICE=cpu``) as the GPU machine would run it:
with ``launch/gpu_rehearsal`` first on PYTHONPATH, nothing that machine lacks can be imported, so a test or module
that needs one of those packages fails here as it would there. The rehearsal runs every step of the real check
(packages, the three test parts, the benchmark, the report) and must say PASS."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REHEARSAL_PATH = REPO / "launch" / "gpu_rehearsal"
ABSENT = runpy.run_path(str(REHEARSAL_PATH / "sitecustomize.py"))["ABSENT_ON_THE_GPU_MACHINE"]
REPORT_FILES = {"gpu_check.md", "gpu_check.json", "gpu_tests.xml", "gpu_tests.log", "throughput.json", "throughput.log",
                "packages.log"}
TINY_BENCHMARK = "--model tiny --seq-lens 256 --image-patches 8 --document-tokens 128"


def _python(code: str, *, blocked: bool) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(REHEARSAL_PATH)] * blocked + [str(REPO)])
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=path), capture_output=True,
                          text=True)


def test_the_rehearsal_cannot_import_what_the_gpu_machine_lacks():
    probe = ("import importlib, importlib.util, json, sys\n"
             "found = {}\n"
             f"for name in {ABSENT!r}:\n"
             "    try:\n"
             "        importlib.import_module(name); found[name] = 'imported'\n"
             "    except ModuleNotFoundError:\n"
             "        found[name] = 'absent' if importlib.util.find_spec(name) is None else 'spec found'\n"
             "print(json.dumps(found))")
    blocked = json.loads(_python(probe, blocked=True).stdout)
    assert blocked == {name: "absent" for name in ABSENT}
    # The control: this machine has PyAV and braceexpand, so without the blocker they import.
    unblocked = json.loads(_python(probe, blocked=False).stdout)
    assert unblocked["av"] == unblocked["braceexpand"] == "imported"


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check_out")
    scratch = tmp_path_factory.mktemp("gpu_check_scratch")
    env = dict(os.environ, MVL_GPU_TESTS_DEVICE="cpu", MVL_GPU_BENCHMARK_ARGS=TINY_BENCHMARK,
               MVL_GPU_SCRATCH=str(scratch), MVL_PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)
    completed = subprocess.run(["bash", str(REPO / "launch/gpu_check.sh"), str(out)], env=env, cwd=REPO,
                               capture_output=True, text=True, timeout=900)
    return completed, out


def test_the_rehearsal_runs_every_part_and_passes(rehearsal):
    completed, out = rehearsal
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["pass"] and report["rehearsal"] and not report["part_errors"]
    assert [part["name"] for part in report["parts"]] == ["layers", "resume", "stages"]
    assert all(part["exit_status"] == 0 for part in report["parts"]), report["parts"]
    summary = report["summary"]
    assert summary["failed"] == summary["not run"] == 0 and summary["passed"] >= 50
    passed = {case["test"] for case in report["tests"] if case["outcome"] == "passed"}
    assert {"test_7b_widths::test_fp32_logits_and_gradients_equal_transformers[local]",
            "test_7b_widths::test_bf16_is_as_close_to_fp32_as_transformers_bf16_is[local]",
            "test_resume::test_distributed_optimizer_resumes_bit_for_bit_after_kill9",
            "test_stages::test_the_four_tiny_stages_learn_one_after_the_other"} <= passed
    assert report["throughput"]["measurements"][0]["seq_len"] == 256


def test_the_report_says_te_was_not_tested_and_counts_apart(rehearsal):
    completed, out = rehearsal
    first = (out / "gpu_check.md").read_text().splitlines()[0]
    assert first.startswith("GPU check PASS: ") and " 0 failed, " in first and " 0 not run;" in first
    assert "TE not tested (absent: the rehearsal runs on the CPU)" in first
    assert first in completed.stdout
    assert "not importable, as on the GPU machine: " + ", ".join(ABSENT) in completed.stdout


def test_the_results_fit_what_comes_back_from_the_gpu_machine(rehearsal):
    _, out = rehearsal
    entries = list(out.iterdir())
    assert {entry.name for entry in entries} == REPORT_FILES and len(entries) <= 8
    assert all(entry.is_file() for entry in entries)
    assert sum(entry.stat().st_size for entry in entries) < 16 * 2**20
