"""The four curriculum stages (MiMo-VL report, Table 1), one module each, with ``recipe(model)``.

Data layout the recipes read (``megatron_vl.config.recipe.packed_dataset_dir``)::

    $MVL_DATA_ROOT/packed/<seq_len>/{caption,interleaved,text,ocr,grounding,cot,eval}     (stages 1-4)
    $MVL_DATA_ROOT/packed/<seq_len>/{video_caption,video_grounding,gui}                 (stages 3-4)
    $MVL_DATA_ROOT/packed/<seq_len>/{long,video_long}                                   (stage 4)

``mimo_vl_7b`` reads 8192-token packs in stages 1-3 and 32768-token packs in stage 4; ``tiny`` (the
demo) reads 1024-token packs in stages 1-3 and 2048-token packs in stage 4. ``eval`` is the
held-out set of each sequence length. Each stage starts from the previous stage's checkpoints under
``$MVL_CHECKPOINT_ROOT/<previous stage>``; stage 1 of ``mimo_vl_7b`` starts from
``$MVL_CHECKPOINT_ROOT/from_hf`` (``checkpoints_tools.from_hf`` output), stage 1 of ``tiny`` from random weights.

Benchmark scores during training (``StageRecipe.benchmarks``) are off in every recipe: each scoring exports
the checkpoint and generates on rank 0 while the other ranks wait. Turn them on for a run with small files,
e.g. ``--set 'benchmarks.files=["benchmarks/captions.jsonl", "benchmarks/refcoco_small.jsonl"]' --set
benchmarks.every=2000 --set benchmarks.limit=200`` (files relative to ``$MVL_DATA_ROOT`` or absolute; ``every`` a
multiple of ``checkpoint.save_every``).
"""
