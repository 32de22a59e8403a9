"""Dependencies point one way: data_prep uses megatron_vl, megatron_vl never imports data_prep."""

import ast
from pathlib import Path

import megatron_vl


def test_megatron_vl_never_imports_data_prep():
    offenders = []
    for path in sorted(Path(megatron_vl.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path}: {name}" for name in names if name.split(".")[0] == "data_prep"]
    assert offenders == []
