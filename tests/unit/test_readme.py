"""The README stays true: its test command is what CI runs, its lists of trainers and architectures are current."""
from pathlib import Path

from nnunet_ext import _readme

ROOT = Path(__file__).resolve().parents[2]
TEST_COMMAND = 'python -m pip install -e ".[test]" && python -m pytest -q'


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in readme
    assert TEST_COMMAND in ci.splitlines()


def test_readme_lists_are_current():
    text = (ROOT / "README.md").read_text()
    assert _readme.updated_readme(text) == text, "README lists are stale: run python -m nnunet_ext._readme"
