"""No module of nnunet-ext imports another module's private (``_name``) function or class: what two modules share
is public API of one of them (issue 14). Private *modules* of a package (``architectures/_fast.py``, ...) may be
imported by their siblings."""
import ast
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = {"nnunet_ext": "nnunet_ext", "architectures": "nnunet_ext.architectures",
                "trainers": "nnunet_ext.trainers", "plans": "nnunet_ext.plans"}
FILES = sorted(p for d in (*PACKAGE_DIRS, "benchmarks") for p in (REPO / d).rglob("*.py"))


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = PACKAGE_DIRS.get(path.relative_to(REPO).parts[0], "")
    return ".".join([package, *(node.module.split(".") if node.module else [])])


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_private_name_of_another_module_is_imported(path):
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(path, node)
            if not module.startswith("nnunet_ext"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") \
                        and not _is_module(f"{module}.{alias.name}"):
                    bad.append(f"line {node.lineno}: from {module} import {alias.name}")
    assert not bad, bad
