"""Step 2, ``pack``: sample shards -> packed shards of sequences of exactly seq_len tokens.

The passes, in order: ``tokenize_shards`` (each sample's ``document_tokens``, long documents split)
writes ``tokenized_shard`` files; ``plan_sequences`` decides which documents share a sequence;
``write_packed_shards`` lays each sequence out (``assemble_sequence``) and writes the shards
(``packed_shard_writer``). ``command`` is the ``pack`` subcommand that runs them, ``resume`` tells
a rerun of the same pack from another one, ``statistics`` counts tokens per kind.
"""
