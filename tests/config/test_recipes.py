"""The curriculum recipes follow DESIGN's table, resolve to the data layout, and recipes / overrides
refuse bad values with the field named."""

import dataclasses
import math
import types

import pytest

from megatron_vl.config.overrides import apply_overrides
from megatron_vl.config.parallel import ParallelConfig
from megatron_vl.config.recipe import (
    FROM_HF, STAGES, WARMUP_STAGE, BlendComponent, StageRecipe, load_recipe, packed_dataset_dir,
)
from megatron_vl.config.training import LRSchedule, OptimizerSettings, TrainedModules
from megatron_vl.runtime.platform import Platform
from megatron_vl.runtime.world_size import LAUNCH_DIR, launch_script_world_size
from megatron_vl.training.run_config import RunPaths, resolve_run
from megatron_vl.training.run_plan import GIB, plan_run

# stage: (vision LR, projector LR, language LR, seq_len, tokens, starts from)
DESIGN_7B = {
    "stage1_projector": (None, 1e-3, None, 8192, 300e9, "from_hf"),
    "stage2_vit": (1e-5, 1e-4, None, 8192, 167e9, "stage1_projector"),
    "stage3_multimodal": (1e-5, 1e-5, 1e-5, 8192, 1.4e12, "stage2_vit"),
    "stage4_32k": (2.5e-5, 2.5e-5, 2.5e-5, 32768, 550e9, "stage3_multimodal"),
}
TOKENIZER = types.SimpleNamespace(image_pad_id=5, video_pad_id=6, vocab_size=512, fingerprint="f" * 64)
CPU = Platform(device="cpu", device_name="cpu", layer_backend="local")
GPU = Platform(device="cuda", device_name="NVIDIA H200", layer_backend="transformer_engine", peak_flops=989e12)


def _paths(tmp_path):
    return RunPaths(data_root=str(tmp_path / "data"), checkpoint_root=str(tmp_path / "ckpt"),
                    log_root=str(tmp_path / "logs"), tokenizer=str(tmp_path / "tok"))


@pytest.mark.parametrize("stage", STAGES)
def test_7b_recipes_follow_the_design_table(stage):
    recipe = load_recipe(stage, "mimo_vl_7b")
    vision, projector, language, seq_len, tokens, init_from = DESIGN_7B[stage]
    assert (recipe.trains.vision_lr, recipe.trains.projector_lr, recipe.trains.language_lr) == (vision, projector, language)
    assert recipe.name == stage and recipe.model == "mimo_vl_7b"
    assert recipe.seq_len == seq_len and recipe.train_tokens == tokens and recipe.init_from == init_from
    assert recipe.train_iterations == math.ceil(tokens / (recipe.global_batch_size * seq_len))
    assert (recipe.train_iterations - 1) * recipe.tokens_per_iteration < tokens <= recipe.train_iterations * recipe.tokens_per_iteration


@pytest.mark.parametrize("stage", STAGES)
def test_7b_recipes_keep_the_pipeline_bubble_small_at_their_launch_size(stage, tmp_path):
    """At the world size of launch/<stage>.sh, at most 10% of a step idles in the pipeline bubble, and the
    estimate leaves a fifth of an 80 GB GPU free."""
    world_size = launch_script_world_size(LAUNCH_DIR / f"{stage}.sh")
    tokenizer = types.SimpleNamespace(image_pad_id=151655, video_pad_id=151656, vocab_size=151680)
    plan = plan_run(resolve_run(load_recipe(stage, "mimo_vl_7b"), _paths(tmp_path), tokenizer, GPU), world_size)
    assert plan.pipeline_bubble_fraction <= 0.10, plan.to_dict()
    assert plan.worst_stage.memory.total < 0.8 * 80e9, plan.worst_stage.memory.total / GIB


@pytest.mark.parametrize("stage", STAGES)
def test_recipes_resolve_to_the_packed_data_layout(stage, tmp_path):
    for model in ("tiny", "mimo_vl_7b"):
        recipe = load_recipe(stage, model)
        run = resolve_run(recipe, _paths(tmp_path), TOKENIZER, CPU)
        assert [entry.path for entry in run.data.blend] == [
            str(packed_dataset_dir(tmp_path / "data", recipe.seq_len, c.kind)) for c in recipe.blend
        ]
        assert run.data.eval_path == str(tmp_path / "data" / "packed" / str(recipe.seq_len) / "eval")
        assert run.checkpoint_dir == str(tmp_path / "ckpt" / stage)
        assert run.log_dir == str(tmp_path / "logs" / stage)
        assert (run.model.image_token_id, run.model.video_token_id) == (5, 6)
        if recipe.init_from is None:
            assert model == "tiny" and stage == "stage1_projector" and run.init_from is None
        else:
            assert run.init_from == str(tmp_path / "ckpt" / recipe.init_from)


def test_tiny_recipes_are_the_demo(tmp_path):
    seq_lens = [load_recipe(stage, "tiny").seq_len for stage in STAGES]
    assert seq_lens == [1024, 1024, 1024, 2048]
    layouts = [load_recipe(stage, "tiny").parallel.model_parallel_size for stage in STAGES]
    assert all(size <= 2 for size in layouts)
    assert [c.kind for c in load_recipe("stage4_32k", "tiny").blend][-1] == "long"


def test_the_blend_grows_stage_by_stage():
    kinds = [{c.kind for c in load_recipe(stage, "mimo_vl_7b").blend} for stage in STAGES]
    assert kinds[0] == {"caption"} and kinds[1] == {"caption", "interleaved"}
    assert kinds[0] < kinds[1] < kinds[2] < kinds[3]


def test_video_and_gui_join_in_stage_3_and_long_videos_in_stage_4():
    """As in the MiMo-VL report; the weights are shares of the sequences, adding up to 1."""
    media = {"video_caption", "video_grounding", "gui"}
    for model in ("tiny", "mimo_vl_7b"):
        kinds = {stage: {c.kind for c in load_recipe(stage, model).blend} for stage in STAGES}
        assert not (media | {"video_long"}) & (kinds["stage1_projector"] | kinds["stage2_vit"])
        assert media <= kinds["stage3_multimodal"] and "video_long" not in kinds["stage3_multimodal"]
        assert media | {"long", "video_long"} <= kinds["stage4_32k"]
        for stage in ("stage3_multimodal", "stage4_32k"):
            assert math.isclose(sum(c.weight for c in load_recipe(stage, model).blend), 1.0)


def test_paths_come_from_arguments_then_environment(tmp_path):
    environ = {"MVL_DATA_ROOT": "/d", "MVL_CHECKPOINT_ROOT": "/c"}
    paths = RunPaths.from_environment(environ, tokenizer="/t/tok.json")
    assert paths == RunPaths(data_root="/d", checkpoint_root="/c", log_root="/c/logs", tokenizer="/t/tok.json")
    assert RunPaths.from_environment(environ, data_root="/x").tokenizer == "/x/tokenizer"


def test_a_url_data_root_gives_url_datasets_and_a_local_tokenizer():
    paths = RunPaths.from_environment({"MVL_DATA_ROOT": "s3://bucket/data/"}, tokenizer="/t/tok.json")
    assert paths.data_root == "s3://bucket/data/" and paths.tokenizer == "/t/tok.json"
    assert packed_dataset_dir(paths.data_root, 8192, "caption") == "s3://bucket/data/packed/8192/caption"
    with pytest.raises(ValueError, match="data root s3://bucket/data is a URL.*--tokenizer or MVL_TOKENIZER"):
        RunPaths.from_environment({"MVL_DATA_ROOT": "s3://bucket/data"})
    with pytest.raises(ValueError, match="MVL_CHECKPOINT_ROOT / --checkpoint-root is the URL s3://b/c: only the data root"):
        RunPaths.from_environment({}, checkpoint_root="s3://b/c")


def _recipe(**changes):
    return dataclasses.replace(load_recipe("stage1_projector", "tiny"), **changes)


@pytest.mark.parametrize("changes, message", [
    (dict(blend=()), "blend is empty"),
    (dict(blend=(("caption", 1), ("caption", 2))), r"lists \['caption'\] more than once"),
    (dict(blend=(("eval", 1),)), "held-out"),
    (dict(blend=(("../up", 1),)), "folder name"),
    (dict(blend=(("caption", 0),)), "weight of caption must be a positive finite number"),
    (dict(global_batch_size=6, micro_batch_size=4), "global_batch_size=6 is not divisible by micro_batch_size=4"),
    (dict(train_tokens=100), r"less than two steps .* = 8192 tokens each; raise train_tokens to at least 16384"),
    (dict(num_workers=True), "num_workers must be an integer >= 0, got True"),
    (dict(precision="fp16"), "precision"),
    (dict(init_from="stage1_projector"), "names the stage itself"),
    (dict(model="llama"), "choose one of"),
    (dict(seq_len=0), "seq_len must be a positive integer"),
    (dict(seq_len=8190, parallel=ParallelConfig(context_parallel=2)), r"seq_len=8190 is not a multiple of 4, .* over 2 ranks"),
    (dict(seq_len=8188, parallel=ParallelConfig(tensor_parallel=2, context_parallel=4, sequence_parallel=True)),
     "seq_len=8188 is not a multiple of 8"),
])
def test_bad_recipes_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        _recipe(**changes)


@pytest.mark.parametrize("build, message", [
    (lambda: TrainedModules(vision_lr=None, projector_lr=None, language_lr=None), "freezes every part"),
    (lambda: TrainedModules(vision_lr=2.0, projector_lr=None, language_lr=None), r"vision_lr must be a learning rate"),
    (lambda: LRSchedule(style="linear"), "cosine"),
    (lambda: LRSchedule(warmup_fraction=1.0), "warmup_fraction"),
    (lambda: OptimizerSettings(checkpoint_format="zarr"), "checkpoint_format"),
    (lambda: OptimizerSettings(adam_beta2=1.0), "adam_beta2"),
    (lambda: ParallelConfig(tensor_parallel=True), "tensor_parallel must be a positive integer, got True"),
    (lambda: ParallelConfig(sequence_parallel=1), "sequence_parallel must be true or false"),
    (lambda: ParallelConfig(pipeline_parallel=2, first_pipeline_stage_language_layers=0), "must be a positive integer or None"),
    (lambda: ParallelConfig(context_parallel=0), "context_parallel must be a positive integer"),
    (lambda: ParallelConfig(context_parallel=2, context_parallel_comm="ring"), "context_parallel_comm"),
])
def test_bad_training_settings_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("layout, alignment, multiple", [
    (dict(), 1, 1),
    (dict(tensor_parallel=4, sequence_parallel=True), 1, 4),
    (dict(context_parallel=2), 4, 4),
    (dict(context_parallel=3), 6, 6),
    (dict(tensor_parallel=4, context_parallel=2, sequence_parallel=True), 4, 8),
    (dict(tensor_parallel=4, context_parallel=4, sequence_parallel=True), 8, 16),
])
def test_documents_align_to_2_x_cp_and_rows_to_what_cp_and_sp_split(layout, alignment, multiple):
    parallel = ParallelConfig(**layout)
    assert (parallel.document_alignment, parallel.sequence_multiple) == (alignment, multiple)


def test_tokenizer_larger_than_the_model_vocabulary_is_refused(tmp_path):
    with pytest.raises(ValueError, match="train a smaller tokenizer"):
        resolve_run(_recipe(), _paths(tmp_path), types.SimpleNamespace(image_pad_id=5, video_pad_id=6, vocab_size=5000, fingerprint="f"), CPU)


def test_precision_auto_follows_the_platform(tmp_path):
    assert resolve_run(_recipe(), _paths(tmp_path), TOKENIZER, CPU).bf16 is False
    on_gpu = resolve_run(_recipe(), _paths(tmp_path), TOKENIZER, GPU)
    assert on_gpu.bf16 is True and on_gpu.model.dtype == "bfloat16" and on_gpu.platform == GPU
    assert resolve_run(_recipe(precision="fp32"), _paths(tmp_path), TOKENIZER, GPU).bf16 is False


def test_layout_that_cannot_split_the_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tensor_parallel"):
        resolve_run(_recipe(parallel=ParallelConfig(tensor_parallel=3)), _paths(tmp_path), TOKENIZER, CPU)


def test_overrides_parse_by_field_type():
    recipe = apply_overrides(_recipe(), [
        "seq_len=128", "trains.vision_lr=1e-4", "trains.language_lr=null", "checkpoint.async_save=true",
        "precision=fp32", "init_from=stage0", "schedule.min_lr_ratio=0", 'blend=[{"kind": "ocr", "weight": 2}]',
        "parallel.sequence_parallel=false", "parallel.tensor_parallel=1",
    ])
    assert recipe.seq_len == 128 and recipe.trains.vision_lr == 1e-4 and recipe.trains.language_lr is None
    assert recipe.checkpoint.async_save is True and recipe.precision == "fp32" and recipe.init_from == "stage0"
    assert recipe.schedule.min_lr_ratio == 0.0 and isinstance(recipe.schedule.min_lr_ratio, float)
    assert recipe.blend == (BlendComponent(kind="ocr", weight=2),) and recipe.parallel == ParallelConfig()


@pytest.mark.parametrize("override, message", [
    ("seq_len", "field.path=value"),
    ("sequence_length=4", "no field 'sequence_length'"),
    ("seq_len.x=4", "is a value"),
    ("seq_len=abc", "expected int"),
    ("checkpoint.save_every=0", "save_every must be a positive integer"),
    ("parallel.first_pipeline_stage_language_layers=2", "pipeline_parallel is 1"),
    ("blend=3", "JSON list"),
])
def test_bad_overrides_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(_recipe(), [override])


def test_recipe_from_a_file_and_unknown_names(tmp_path):
    path = tmp_path / "my_stage.py"
    path.write_text(
        "import dataclasses\nfrom megatron_vl.config.recipe import load_recipe\n"
        "def recipe(model):\n    return dataclasses.replace(load_recipe('stage2_vit', model), name='my_stage')\n"
    )
    assert load_recipe(str(path), "tiny").name == "my_stage"
    with pytest.raises(ValueError, match="no recipe 'stage9'"):
        load_recipe("stage9", "tiny")
    assert isinstance(load_recipe("megatron_vl.config.recipes.stage4_32k", "tiny"), StageRecipe)


def test_tiny_starts_with_a_text_warm_up_of_its_llm_and_the_7b_from_a_pretrained_one():
    warm_up = load_recipe(WARMUP_STAGE, "tiny")
    assert (warm_up.trains.vision_lr, warm_up.trains.projector_lr) == (None, None) and warm_up.trains.language_lr
    assert {c.kind for c in warm_up.blend} == {"language", "text"} and warm_up.init_from is None
    assert load_recipe("stage1_projector", "tiny").init_from == WARMUP_STAGE
    assert load_recipe("stage1_projector", "mimo_vl_7b").init_from == FROM_HF
    with pytest.raises(ValueError, match="starts from a pretrained LLM"):
        load_recipe(WARMUP_STAGE, "mimo_vl_7b")
