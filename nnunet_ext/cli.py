"""``nnunet-ext``: the command line of nnunet-ext (sub-commands in nnU-Net's style), built from the command table
:data:`nnunet_ext.commands.COMMANDS`.

Only the module of the sub-command that runs is imported; the others get a placeholder parser that shows their help
line. So ``env``, ``--version`` and ``-h`` import neither torch nor nnU-Net. Errors a user can fix are reported on one
line on stderr with a non-zero exit status (no traceback).
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import nnunet_ext
from nnunet_ext.commands import COMMANDS, load_register
from nnunet_ext.errors import UserError  # re-exported: nnunet_ext.cli.UserError


class _OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``PROG: error: MESSAGE (see PROG -h)``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to build its sub-parser, the other sub-commands get a
    placeholder that shows their help line. ``command="*"`` builds every sub-parser (imports every module)."""
    p = _OneLineParser(
        prog="nnunet-ext",
        description="nnU-Net v2 plugin: DMC-Net, ResDSN C2F, DLKUNet, MoNet and the two-stage 3D U-Net as nnU-Net "
                    "trainers. Use the stock nnU-Net commands after: eval \"$(nnunet-ext env)\"")
    p.add_argument("--version", action="version", version=f"nnunet-ext {nnunet_ext.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (_, help_) in COMMANDS.items():
        if command in (name, "*"):
            load_register(name)(sub, name, help_)
        else:
            s = sub.add_parser(name, help=help_, add_help=False)
            s.add_argument("args", nargs=argparse.REMAINDER)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"nnunet-ext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
