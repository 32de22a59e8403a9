"""Step 1, ``ingest``: raw JSONL / webdataset documents -> sample shards (one document per sample)."""
