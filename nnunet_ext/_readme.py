"""Keeps the README's lists of trainers and architectures true: ``python -m nnunet_ext._readme`` rewrites the blocks
between the ``<!-- trainers -->`` / ``<!-- archs -->`` markers; tests/unit/test_readme.py fails when they are stale."""
from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def render_trainers() -> str:
    from nnunet_ext import trainers

    lines = ["| trainer | architecture | notes |", "|---|---|---|"]
    for name, cls in trainers.exported_trainers().items():
        # the docstring's first paragraph, on one line
        first = (cls.__doc__ or "").strip().split("\n\n")[0]
        doc = " ".join(part.strip() for part in first.splitlines()).replace("|", "\\|")
        lines.append(f"| `{name}` | `{getattr(cls, 'arch', '-')}` | {doc} |")
    return "\n".join(lines)


def render_archs() -> str:
    from nnunet_ext import architectures as A

    lines = ["| architecture | trainable parameters (default construction) | description |", "|---|---:|---|"]
    for name in A.list_architectures():
        n = A.count_parameters_of(name)
        lines.append(f"| `{name}` | {n:,} | {A.get_spec(name).description} |")
    return "\n".join(lines)


def _replace(text: str, key: str, body: str) -> str:
    # the block may be empty (start marker directly followed by the end marker)
    pat = re.compile(rf"(<!-- {key}:start -->\n)(?:.*?\n)?(<!-- {key}:end -->)", re.S)
    if not pat.search(text):
        raise ValueError(f"README has no <!-- {key}:start --> ... <!-- {key}:end --> block")
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def updated_readme(text: str) -> str:
    return _replace(_replace(text, "trainers", render_trainers()), "archs", render_archs())


def main() -> int:
    text = README.read_text()
    new = updated_readme(text)
    if new != text:
        README.write_text(new)
        print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
