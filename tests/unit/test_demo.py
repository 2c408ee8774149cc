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


def test_a_work_folder_made_with_other_dataset_options_is_refused(tmp_path, capsys):
    """A second run reuses the dataset only if it was made with the same options: one line, exit 2, nothing new."""
    import json

    from nnunet_ext.cli import main

    work = tmp_path / "demo"
    (work / "nnUNet_raw" / "Dataset991_SyntheticPancreas").mkdir(parents=True)
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    assert main(["demo", "--workdir", str(work), "-device", "cpu"]) == 2  # an older demo's folder: no record
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no record of the options" in err and str(work) in err
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before

    opts = dict(cases=8, test_cases=4, size_scale=1.0, seed=0, pancreas_scale=2.0, tumour_scale=2.0,
                tumour_fraction=1.0)
    (work / "demo_dataset_options.json").write_text(json.dumps(opts))
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    assert main(["demo", "--workdir", str(work), "-device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "size_scale=1.0" in err and "pancreas_scale" not in err
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before
