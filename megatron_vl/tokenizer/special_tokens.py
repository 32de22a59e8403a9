"""The multimodal special tokens, which of them a tokenizer must carry, and where a trained one puts them."""

from __future__ import annotations

# In this order a trained tokenizer (data_prep train-tokenizer) gives them ids 0, 1, 2, ...
# A Qwen2-style tokenizer.json keeps its own ids (151643 and up).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<think>",
    "</think>",
)

# Only chain-of-thought documents use these; Qwen2.5-VL's own tokenizer lacks them. A tokenizer without
# them loads, and pack refuses (drops and counts) only the documents that need them.
OPTIONAL_SPECIAL_TOKENS = ("<think>", "</think>")
REQUIRED_SPECIAL_TOKENS = tuple(token for token in SPECIAL_TOKENS if token not in OPTIONAL_SPECIAL_TOKENS)

TRAINED_SPECIAL_IDS = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
