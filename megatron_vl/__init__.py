"""megatron-vl: pre-training MiMo-VL-style vision-language models on megatron-core."""
