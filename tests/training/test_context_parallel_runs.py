"""Context parallelism through the training entry point (``torchrun --standalone``, gloo, fp32, the tiny stage 3 on
128-token packs made with ``pack --document-alignment 8``): CP=2 trains as CP=1 does, and its checkpoints resume
at CP=1 and at TP=2 x CP=2 where they stopped.

Six steps of 4 sequences, a checkpoint every 3 and a held-out loss every 3, and two small benchmark files scored on
the last checkpoint. CP=1 runs on one rank, CP=2 on two (one data-parallel replica: the same micro-batches),
TP=2 x CP=2 with SP on four. The resumed runs start from a copy of the
CP=2 run's checkpoints at iteration 3.
"""

from __future__ import annotations

import shutil

import pytest

from megatron_vl.training import checkpoint_files
from megatron_vl.training.metrics_file import read_metrics
from tests.training import torchrun
from tests.training.test_train_runs import BENCHMARK_SETTINGS, benchmark_files  # noqa: F401 - a fixture
from tests.training.training_data import build_data_root

STAGE = "stage3_multimodal"
STEPS, SAVE_EVERY, BATCH = 6, 3, 4
OVERRIDES = (f"global_batch_size={BATCH}", f"train_tokens={STEPS * BATCH * 128}", f"checkpoint.save_every={SAVE_EVERY}",
             f"eval.every={SAVE_EVERY}", 'blend=[{"kind": "caption", "weight": 1}, {"kind": "interleaved", "weight": 1}]')
CP2 = ("parallel.context_parallel=2",)
TP2_CP2 = ("parallel.tensor_parallel=2", "parallel.sequence_parallel=true", "parallel.context_parallel=2")


@pytest.fixture(scope="module")
def aligned_data_root(tmp_path_factory):
    """The training data root packed with room to pad every document to 8 tokens (CP up to 4)."""
    return build_data_root(tmp_path_factory.mktemp("aligned_data_root"), document_alignment=8)


def _run(data_root, root, nproc, layout, files):
    scored = ", ".join(f'"{path}"' for path in files)
    torchrun.run(stage=STAGE, nproc=nproc, data_root=data_root, checkpoint_root=root,
                 overrides=(*OVERRIDES, *layout, f"benchmarks.files=[{scored}]", f"benchmarks.every={STEPS}",
                            *(f"benchmarks.{name}={value}" for name, value in BENCHMARK_SETTINGS.items()),
                            "benchmarks.chat=false", 'benchmarks.caption_prompt=""'),
                 extra_args=("--init-from", "none"))
    return root


@pytest.fixture(scope="module")
def cp1(aligned_data_root, benchmark_files, tmp_path_factory):
    return _run(aligned_data_root, tmp_path_factory.mktemp("cp1"), 1, (), benchmark_files)


@pytest.fixture(scope="module")
def cp2(aligned_data_root, benchmark_files, tmp_path_factory):
    return _run(aligned_data_root, tmp_path_factory.mktemp("cp2"), 2, CP2, benchmark_files)


def _train_records(root) -> dict[int, dict]:
    return {record["iteration"]: record for record in read_metrics(root / "logs" / STAGE)}


def _resumed_at_iteration_3(cp2, root):
    """A copy of the CP=2 run's checkpoints whose latest is iteration 3."""
    shutil.copytree(cp2 / STAGE, root / STAGE)
    shutil.rmtree(checkpoint_files.iteration_dir(root / STAGE, STEPS))
    checkpoint_files.write_latest_iteration(root / STAGE, SAVE_EVERY)
    return root


def test_cp2_logs_the_losses_tokens_and_held_out_loss_of_cp1(cp1, cp2):
    expected, got = _train_records(cp1), _train_records(cp2)
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    for iteration, record in expected.items():
        assert got[iteration]["loss"] == pytest.approx(record["loss"], rel=1e-5), iteration
        for field in ("loss_tokens", "loss_tokens_per_kind", "tokens", "consumed_tokens"):
            assert got[iteration][field] == record[field], (field, iteration)
        # The same model FLOPs but for the attention pairs of the padding CP adds to each document (up to 3 tokens).
        assert got[iteration]["flops"] == pytest.approx(record["flops"], rel=1e-3), iteration
        assert got[iteration]["flops"] >= record["flops"], iteration
    held_out, cp2_held_out = torchrun.eval_losses(cp1, STAGE), torchrun.eval_losses(cp2, STAGE)
    assert sorted(held_out) == [SAVE_EVERY, STEPS]
    for iteration, loss in held_out.items():
        assert cp2_held_out[iteration] == pytest.approx(loss, rel=1e-5), iteration


def test_cp2_scores_the_benchmarks_as_cp1(cp1, cp2):
    (expected,) = read_metrics(cp1 / "logs" / STAGE, "benchmark")
    (got,) = read_metrics(cp2 / "logs" / STAGE, "benchmark")
    assert got["iteration"] == expected["iteration"] == STEPS
    assert got["scores"].keys() == expected["scores"].keys() and len(expected["scores"]) >= 2
    assert got["scores"] == pytest.approx(expected["scores"], abs=1e-6)


@pytest.mark.parametrize("nproc, layout", [(1, ()), (4, TP2_CP2)], ids=["CP=1", "TP=2 x CP=2"])
def test_a_cp2_checkpoint_resumes_at_another_layout_where_it_stopped(aligned_data_root, cp2, tmp_path, nproc, layout):
    root = _resumed_at_iteration_3(cp2, tmp_path)
    torchrun.run(stage=STAGE, nproc=nproc, data_root=aligned_data_root, checkpoint_root=root,
                 overrides=(*OVERRIDES, *layout), extra_args=("--init-from", "none"))
    log = (root / f"{STAGE}.log").read_text()
    assert f"resumed from {root / STAGE / checkpoint_files.iteration_dir('', SAVE_EVERY)}" in log
    expected, resumed = _train_records(cp2), _train_records(root)
    assert sorted(resumed) == list(range(SAVE_EVERY + 1, STEPS + 1))
    for iteration in range(SAVE_EVERY + 1, STEPS + 1):
        assert resumed[iteration]["loss"] == pytest.approx(expected[iteration]["loss"], rel=1e-5), iteration
        assert resumed[iteration]["consumed_tokens"] == expected[iteration]["consumed_tokens"]
        assert resumed[iteration]["loss_tokens_per_kind"] == expected[iteration]["loss_tokens_per_kind"]
