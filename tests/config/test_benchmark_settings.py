"""Benchmark scores during training as a recipe option: off by default, settable with ``--set``, saved with the run,
refused when it cannot work (no files, not at a checkpoint, files named alike), files resolved under the data root."""

import dataclasses
import json

import pytest

from megatron_vl.config.overrides import apply_overrides
from megatron_vl.config.recipe import STAGES, benchmark_file_paths, load_recipe
from megatron_vl.config.serialization import config_to_dict
from megatron_vl.config.training import BenchmarkSettings
from megatron_vl.training.run_config import resolve_run
from tests.config.test_recipes import CPU, TOKENIZER, _paths

FILES = '["benchmarks/captions.jsonl", "/abs/MMBench_DEV_EN.tsv"]'


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("model", ["mimo_vl_7b", "tiny"])
def test_every_recipe_leaves_the_benchmarks_off(stage, model):
    assert load_recipe(stage, model).benchmarks == BenchmarkSettings()
    assert BenchmarkSettings().every is None


def test_overrides_set_the_benchmarks_and_the_run_config_saves_them(tmp_path):
    recipe = apply_overrides(load_recipe("stage1_projector", "tiny"), [
        f"benchmarks.files={FILES}", "benchmarks.every=20", "benchmarks.limit=50", 'benchmarks.metrics=["cider", null]',
        "benchmarks.max_new_tokens=16",
    ])
    assert recipe.benchmarks == BenchmarkSettings(
        every=20, files=("benchmarks/captions.jsonl", "/abs/MMBench_DEV_EN.tsv"), metrics=("cider", None), limit=50,
        max_new_tokens=16,
    )
    assert recipe.benchmarks.names == ["captions", "MMBench_DEV_EN"]
    run = resolve_run(recipe, _paths(tmp_path), TOKENIZER, CPU)
    assert run.benchmark_files == (str(tmp_path / "data" / "benchmarks" / "captions.jsonl"), "/abs/MMBench_DEV_EN.tsv")
    saved = json.loads(json.dumps(config_to_dict(run)))
    assert saved["recipe"]["benchmarks"] == {
        "every": 20, "files": ["benchmarks/captions.jsonl", "/abs/MMBench_DEV_EN.tsv"], "metrics": ["cider", None],
        "limit": 50, "batch_size": 8, "max_new_tokens": 16, "chat": True, "caption_prompt": None, "grounding_prompt": None,
    }
    assert saved["benchmark_files"] == list(run.benchmark_files)


@pytest.mark.parametrize("overrides, message", [
    (["benchmarks.every=20"], r"every=20 scores no files: name them first, e.g. --set 'benchmarks.files=\["),
    ([f"benchmarks.files={FILES}", "benchmarks.every=15"],
     "benchmarks.every=15 is not a multiple of checkpoint.save_every=10; .* multiple of 10"),
    (['benchmarks.files=["a/captions.jsonl", "b/captions.tsv"]'], r"several files are named \['captions'\]"),
    ([f"benchmarks.files={FILES}", 'benchmarks.metrics=["cider"]'], "1 entries for 2 files"),
    (["benchmarks.every=0"], "every must be a positive integer or None"),
    (["benchmarks.batch_size=0"], "batch_size must be a positive integer"),
    (["benchmarks.files=captions.jsonl"], "expected a JSON list"),
])
def test_benchmarks_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(load_recipe("stage1_projector", "tiny"), overrides)


def test_a_multiple_of_save_every_is_accepted():
    recipe = load_recipe("stage1_projector", "tiny")
    benchmarks = BenchmarkSettings(every=30, files=("captions.jsonl",))
    assert dataclasses.replace(recipe, benchmarks=benchmarks).benchmarks.every == 30


def test_relative_files_under_a_url_data_root_are_refused():
    assert benchmark_file_paths("s3://bucket/data", ("/local/captions.jsonl",)) == ("/local/captions.jsonl",)
    with pytest.raises(ValueError, match="relative to the data root s3://bucket/data, a URL.*absolute path"):
        benchmark_file_paths("s3://bucket/data", ("benchmarks/captions.jsonl",))
