"""Checkpoint tools: megatron-vl dist checkpoints <-> Hugging Face Qwen2.5-VL folders, verify, generate, evaluate.

Every module here is a command-line tool (or serves one), so the third-party warnings a user cannot act
on are silenced when the package is imported: megatron-core emits them while it is being imported.
"""

from megatron_vl.third_party_warnings import silence_known_third_party_warnings

silence_known_third_party_warnings()
