"""Dropping duplicate images across the partitions of a partitioned ingest (see data_prep.partitions)."""
