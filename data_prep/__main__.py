"""``python -m data_prep <subcommand>``: offline data preparation.

Each subcommand is a module of this package with ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status); its docstring's first line is the one-line help. A
``ValueError`` is a user error, reported by megatron_vl.command_line's one policy (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from megatron_vl.command_line import report_user_error

SUBCOMMANDS = {
    "train-tokenizer": "data_prep.train_tokenizer",
    "demo-corpus": "data_prep.demo.command",
    "ingest": "data_prep.ingest.command",
    "dedup-plan": "data_prep.dedup.plan",
    "dedup-apply": "data_prep.dedup.apply",
    "pack": "data_prep.pack.command",
    "merge": "data_prep.merge",
    "inspect": "data_prep.inspect.inspect_packed",
    "verify": "data_prep.inspect.verify",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or name).strip().splitlines()[0]
        sub = subparsers.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        return report_user_error(f"python -m data_prep {args.subcommand}", error)


if __name__ == "__main__":
    sys.exit(main())
