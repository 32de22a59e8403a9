"""The training entry point run for real (``torchrun --standalone``, 2 CPU ranks, the ``tiny`` recipes on
128-token packs): kill -9 and resume, SIGTERM, resume at another TP, stage 1 freezing, a stage transition.

Stage 1 runs at the recipe's TP=2 for 6 iterations (checkpoints every 2, eval every 3) from a model-only
checkpoint as ``checkpoints_tools.from_hf`` writes it (saved at TP=1). Stage 2 also scores two small benchmark
files on the checkpoint it saves (``benchmarks``).
"""

import json
import os
import shutil
import signal

import pytest
import torch

from checkpoints_tools.benchmark_scoring.benchmark_files import PromptSettings
from checkpoints_tools.evaluate import evaluate_folder
from checkpoints_tools.hf_inputs import draw_image
from checkpoints_tools.to_hf import export
from megatron_vl.training import checkpoint_files
from megatron_vl.training.benchmark_scores import benchmark_values
from megatron_vl.training.metrics_file import read_metrics
from tests.checkpoints_tools.benchmark_scoring.test_jsonl_benchmarks import write_jsonl
from tests.training import torchrun
from tests.training.init_checkpoint import checkpoint_tensors

STAGE1, STAGE2 = "stage1_projector", "stage2_vit"
ITERATIONS = 6
BATCH = 4
STAGE1_OVERRIDES = (f"global_batch_size={BATCH}", f"train_tokens={ITERATIONS * BATCH * 128}", "checkpoint.save_every=2",
                    "eval.every=3")


def _stage1(data_root, init_checkpoint, checkpoint_root, overrides=()):
    return dict(stage=STAGE1, nproc=2, data_root=data_root, checkpoint_root=checkpoint_root,
                overrides=(*STAGE1_OVERRIDES, *overrides), extra_args=("--init-from", str(init_checkpoint)))


@pytest.fixture(scope="module")
def reference(data_root, init_checkpoint, tmp_path_factory):
    """Stage 1 uninterrupted."""
    root = tmp_path_factory.mktemp("reference")
    torchrun.run(**_stage1(data_root, init_checkpoint, root))
    return root


@pytest.fixture(scope="module")
def interrupted(data_root, init_checkpoint, tmp_path_factory):
    """Stage 1 with a DataLoader worker per rank, killed with SIGKILL (every process) once its first
    checkpoint exists; resumed and sent SIGTERM after its first new step, to rank 1 and its DataLoader
    worker only (torchrun signals each rank's process group); resumed again to the end. A copy of the
    checkpoints after the SIGTERM is kept for the resume at another TP."""
    root = tmp_path_factory.mktemp("interrupted")
    run = _stage1(data_root, init_checkpoint, root, ("num_workers=1",))
    process = torchrun.start(**run)
    torchrun.wait_for(lambda: torchrun.latest(root, STAGE1) is not None, process, what="the first checkpoint")
    torchrun.kill_all(process)
    killed_at = torchrun.latest(root, STAGE1)

    process = torchrun.start(**run)
    log = root / f"{STAGE1}.log"
    resumed_step = f"iter {killed_at + 1}/{ITERATIONS}"
    torchrun.wait_for(lambda: resumed_step in log.read_text().rpartition("resumed from")[2], process, what="a resumed step")
    os.killpg(torchrun.workers(process)[1].pid, signal.SIGTERM)
    sigterm_exit = torchrun.finish(process)
    stopped_at = torchrun.latest(root, STAGE1)
    copy = tmp_path_factory.mktemp("tp_change")
    shutil.copytree(root / STAGE1, copy / STAGE1)

    torchrun.run(**run)
    return dict(root=root, killed_at=killed_at, sigterm_exit=sigterm_exit, stopped_at=stopped_at, copy=copy)


def test_kill9_and_sigterm_then_resume_give_the_uninterrupted_losses_bit_for_bit(reference, interrupted):
    assert 0 < interrupted["killed_at"] < interrupted["stopped_at"] < ITERATIONS
    expected = torchrun.losses(reference, STAGE1)
    assert sorted(expected) == list(range(1, ITERATIONS + 1))
    assert torchrun.losses(interrupted["root"], STAGE1) == expected
    assert torchrun.eval_losses(interrupted["root"], STAGE1) == torchrun.eval_losses(reference, STAGE1)
    assert len(torchrun.eval_losses(reference, STAGE1)) == 2


def test_sigterm_to_one_rank_saves_and_exits_0(interrupted):
    assert interrupted["sigterm_exit"] == 0
    root = interrupted["copy"] / STAGE1
    assert checkpoint_files.read_latest_iteration(root) == interrupted["stopped_at"]
    record = checkpoint_files.read_run_record(checkpoint_files.iteration_dir(root, interrupted["stopped_at"]))
    assert record["iteration"] == interrupted["stopped_at"]
    assert "SIGTERM received" in (interrupted["root"] / f"{STAGE1}.log").read_text()


def test_resume_at_another_tensor_parallel_size_continues_the_run(data_root, init_checkpoint, reference, interrupted):
    copy, stopped_at = interrupted["copy"], interrupted["stopped_at"]
    torchrun.run(**_stage1(data_root, init_checkpoint, copy, ("parallel.sequence_parallel=false", "parallel.tensor_parallel=1")))
    expected, resumed = torchrun.losses(reference, STAGE1), torchrun.losses(copy, STAGE1)
    assert sorted(resumed) == list(range(stopped_at + 1, ITERATIONS + 1))
    for iteration in resumed:
        assert resumed[iteration] == pytest.approx(expected[iteration], rel=1e-4), iteration
    assert f"resumed from {copy / STAGE1 / checkpoint_files.iteration_dir('', stopped_at)}" in (copy / f"{STAGE1}.log").read_text()


def test_stage1_changes_the_projector_only(init_checkpoint, reference):
    before = checkpoint_tensors(checkpoint_files.iteration_dir(init_checkpoint, 0))
    after = checkpoint_tensors(checkpoint_files.iteration_dir(reference / STAGE1, ITERATIONS))
    model_keys = [key for key in before if not key.startswith("optimizer.") and "_extra_state" not in key]
    assert any(key.startswith("vision_model.") for key in model_keys)
    for key in model_keys:
        if key.startswith("vision_projection."):
            assert not torch.equal(after[key], before[key]), f"{key} did not train"
        else:
            assert torch.equal(after[key], before[key]), f"{key} changed while frozen"
    optimizer_keys = [key for key in after if key.startswith("optimizer.state.exp_avg.")]
    assert optimizer_keys and all(".vision_projection." in key for key in optimizer_keys)


BENCHMARK_SETTINGS = dict(batch_size=2, max_new_tokens=4)


@pytest.fixture(scope="module")
def benchmark_files(tmp_path_factory):
    """A caption file and a grounding file of two rows each, pictures next to them."""
    root = tmp_path_factory.mktemp("benchmarks")
    for index, size in enumerate([(80, 64), (60, 90), (120, 80), (64, 64)]):
        draw_image(*size, index).save(root / f"picture{index}.png")
    captions = write_jsonl(root / "captions.jsonl", [
        {"image": "picture0.png", "captions": ["a red circle and a blue square", "shapes on a tint"]},
        {"image": "picture1.png", "captions": ["coloured shapes"]},
    ])
    shapes = write_jsonl(root / "shapes.jsonl", [
        {"image": "picture2.png", "query": "the red circle", "boxes": [[10, 20, 60, 70]]},
        {"image": "picture3.png", "query": "the blue square", "boxes": [[0, 0, 32, 32]]},
    ])
    return [captions, shapes]


@pytest.fixture(scope="module")
def stage2(data_root, reference, benchmark_files):
    """Stage 2 (ViT + projector, at the recipe's TP=1 x DP=2) from stage 1's checkpoints (TP=2) for 2 iterations;
    it profiles its second step and scores the benchmark files on its last checkpoint, asked as a base model is
    (no chat template, an empty caption prompt)."""
    files = ", ".join(f'"{path}"' for path in benchmark_files)
    torchrun.run(stage=STAGE2, nproc=2, data_root=data_root, checkpoint_root=reference,
                 overrides=(f"global_batch_size={BATCH}", f"train_tokens={2 * BATCH * 128}", "checkpoint.save_every=2",
                            "eval.every=2", "logging.profile_steps=[2, 2]", f"benchmarks.files=[{files}]",
                            *(f"benchmarks.{name}={value}" for name, value in BENCHMARK_SETTINGS.items()),
                            "benchmarks.chat=false", 'benchmarks.caption_prompt=""', "benchmarks.every=2"))
    return reference


def test_new_stage_takes_the_weights_and_a_fresh_optimizer(stage2):
    reference = stage2
    assert sorted(torchrun.losses(reference, STAGE2)) == [1, 2]
    stage1 = checkpoint_tensors(checkpoint_files.iteration_dir(reference / STAGE1, ITERATIONS))
    stage2 = checkpoint_tensors(checkpoint_files.iteration_dir(reference / STAGE2, 2))
    language = [key for key in stage1 if key.startswith("language_model.") and "_extra_state" not in key]
    assert language and all(torch.equal(stage2[key], stage1[key]) for key in language)
    vision = [key for key in stage1 if key.startswith("vision_model.") and "_extra_state" not in key]
    assert any(not torch.equal(stage2[key], stage1[key]) for key in vision)
    record = checkpoint_files.read_run_record(checkpoint_files.iteration_dir(reference / STAGE2, 2))
    assert record["iteration"] == 2 and record["stage"] == STAGE2
    assert record["consumed_tokens"] == 2 * BATCH * 128
    common = torch.load(checkpoint_files.iteration_dir(reference / STAGE2, 2) / "common.pt", weights_only=False)
    assert common["scheduler"]["num_steps"] == 2 and common["train_state"]["iteration"] == 2
    assert {group["step"] for group in common["optimizer"]["optimizer"]["param_groups"]} == {2}
    for rank in (0, 1):
        assert (reference / "logs" / STAGE2 / f"profile_rank{rank}.json").stat().st_size > 0


def test_training_from_an_s3_data_root_gives_the_local_losses(data_root, init_checkpoint, reference, tmp_path,
                                                              monkeypatch):
    """Stage 1 reading every packed dataset (and the held-out set) from an S3-compatible server gives the losses
    of the run that read them from the local folder. Outages mid-read are tested on the loader itself
    (tests/data/test_train_loader_remote.py), where their timing is under the test's control."""
    import s3fs

    from tests.object_storage_servers import S3Server, s3_environment

    with S3Server() as s3:
        for name, value in s3_environment(s3.endpoint_url).items():
            monkeypatch.setenv(name, value)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("datasets")
        fs.put(str(data_root / "packed"), "datasets/root/packed", recursive=True)
        run = _stage1("s3://datasets/root", init_checkpoint, tmp_path, ("num_workers=1",))
        run["extra_args"] = (*run["extra_args"], "--tokenizer", str(data_root / "tokenizer"))
        torchrun.run(**run)
        log = (tmp_path / f"{STAGE1}.log").read_text()
    assert "s3://datasets/root/packed/128/caption" in (tmp_path / "logs" / STAGE1 / "config.json").read_text()
    assert torchrun.losses(tmp_path, STAGE1) == torchrun.losses(reference, STAGE1), log[-3000:]
    assert torchrun.eval_losses(tmp_path, STAGE1) == torchrun.eval_losses(reference, STAGE1)


def test_benchmark_scores_of_the_saved_checkpoint_reach_the_metrics(stage2, benchmark_files, tmp_path):
    """The end of stage 2 (iteration 2, also a multiple of benchmarks.every) is scored once, after its save: the
    record holds the scores, and LOG_DIR/benchmarks the predictions, that evaluate_folder gives on the export of
    that checkpoint."""
    (record,) = read_metrics(stage2 / "logs" / STAGE2, "benchmark")
    assert record["iteration"] == 2 and record["rows"] == {"captions": 2, "shapes": 2} and record["seconds"] > 0
    assert list(record["scores"]) == ["captions/cider", "shapes/iou@0.5", "shapes/mean_iou"]
    export(checkpoint_files.iteration_dir(stage2 / STAGE2, 2), tmp_path / "hf", progress=False)
    # One thread, as torchrun's ranks generate: greedy answers then agree bit for bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = evaluate_folder(tmp_path / "hf", benchmark_files, device="cpu", progress=False,
                                  prompts=PromptSettings(chat=False, caption_prompt=""), **BENCHMARK_SETTINGS)
    finally:
        torch.set_num_threads(threads)
    assert record["scores"] == pytest.approx(benchmark_values(results, 0.0)["scores"])
    iteration_dir = checkpoint_files.iteration_dir(stage2 / STAGE2, 2)
    saved = json.loads((stage2 / "logs" / STAGE2 / "benchmarks" / f"{iteration_dir.name}.json").read_text())
    assert saved["model"] == f"{iteration_dir} (iteration 2)"
    for saved_file, result in zip(saved["files"], results["files"]):
        assert saved_file["path"] == result["path"]
        assert [row["prediction"] for row in saved_file["predictions"]] == [row["prediction"] for row in result["predictions"]]
    log = (stage2 / f"{STAGE2}.log").read_text()
    assert "benchmark at iter 2 | captions cider " in log and " | shapes iou@0.5 " in log
