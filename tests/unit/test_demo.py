"""``nnunet-ext demo``: the README's account of the demo's defaults is the demo's argparse defaults."""
import re
import shlex
from pathlib import Path

from nnunet_ext.cli import build_parser
from nnunet_ext.data.demo import STOCK, schedule_suffix

ROOT = Path(__file__).resolve().parents[2]
#: the options the README's demo sentence states (the rest: work folder, trainer, configuration, device)
STATED = {"cases", "test_cases", "size_scale", "pancreas_scale", "tumour_scale", "tumour_fraction", "epochs", "iters",
          "mirror"}


def _readme_defaults() -> str:
    text = " ".join((ROOT / "README.md").read_text().split())
    m = re.search(r"The demo's defaults: `([^`]*)`", text)
    assert m, "README: the demo's defaults sentence is missing"
    return m.group(1)


def test_readme_states_the_demo_defaults():
    parser = build_parser("demo")
    stated = shlex.split(_readme_defaults())
    default = parser.parse_args(["demo"])
    assert vars(parser.parse_args(["demo", *stated])) == vars(default), stated
    named = {a.lstrip("-").replace("-", "_") for a in stated if a.startswith("--")}
    assert named | {"mirror"} == STATED, named  # --mirror is off by default: the sentence says "without --mirror"
    assert ("without `--mirror`" in " ".join((ROOT / "README.md").read_text().split())) == (not default.mirror)


def test_readme_prediction_folders_are_the_default_schedule():
    default = build_parser("demo").parse_args(["demo"])
    suffix = schedule_suffix(default.epochs, default.iters, default.mirror)
    folders = set(re.findall(r"predictions/(\w+)", (ROOT / "README.md").read_text()))
    assert folders and all(f.endswith(suffix) for f in folders), (folders, suffix)
    assert STOCK + suffix in folders


def test_schedule_suffix():
    assert schedule_suffix(10, 25, False) == "_nomirror_10epochs_25iters"
    assert schedule_suffix(1, 5, True) == "_1epoch_5iters"
