"""Offline data preparation: ``python -m data_prep <subcommand> --help``."""
