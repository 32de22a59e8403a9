"""Benchmark scores of an exported folder: benchmark files read as users have them on disk (VLMEvalKit TSVs,
grounding and caption JSONL), answered by batched greedy generation, scored by each benchmark's metric."""
