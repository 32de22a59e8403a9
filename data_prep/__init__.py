"""Offline data preparation: ``python -m data_prep <subcommand> --help``.

The folders follow the pipeline:

    demo/              demo-corpus: a raw corpus of every kind drawn from a seed (the demo's and the tests' input)
    train_tokenizer    train-tokenizer: a byte-level BPE with the multimodal special tokens
    ingest/            ingest: raw documents -> sample shards
    sample_shards      the sample shards: what ingest writes and pack reads
    pack/              pack: sample shards -> packed shards
    inspect/           inspect and verify: a packed dataset shown to a person, or checked

Shared by several steps: ``parallel_map`` (an order-keeping process pool) and ``webdataset_tar``.
"""
