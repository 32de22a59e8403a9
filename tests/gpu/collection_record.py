"""A pytest plugin of the GPU check: ``-p tests.gpu.collection_record --collected-file F`` writes the node id of
every collected test to F, one a line, before the first test runs.

A part of the check that runs out of its time budget is stopped with SIGINT: its JUnit file then lists the tests
that finished, and this list tells the report which tests were never reached.
"""

from __future__ import annotations

from pathlib import Path


def pytest_addoption(parser):
    parser.addoption("--collected-file", default=None, help="write the collected tests' node ids to this file")


def pytest_collection_finish(session):
    path = session.config.getoption("collected_file")
    if path:
        Path(path).write_text("".join(f"{item.nodeid}\n" for item in session.items))
