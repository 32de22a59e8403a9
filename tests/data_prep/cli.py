"""Run one data_prep subcommand in this process, as ``python -m data_prep <name> ...`` would."""

from __future__ import annotations

import argparse


def run_subcommand(module, *argv) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args([str(arg) for arg in argv]))
