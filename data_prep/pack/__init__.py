"""Step 2, ``pack``: sample shards -> packed shards of sequences of exactly seq_len tokens.

The passes, in order: ``tokenize_shards`` (each sample's ``document_tokens``, long documents split),
``plan_sequences`` (which documents share a sequence), ``write_packed_shards`` (each sequence laid
out by ``assemble_sequence``). ``command`` is the ``pack`` subcommand that runs them.
"""
