"""The command line: listings on stdout only, one-line errors with a non-zero exit and nothing written."""
import subprocess
import sys

import pytest

from tests.helpers import n_trainable
from nnunet_ext import architectures as A
from nnunet_ext import trainers


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "nnunet_ext.cli", *args], capture_output=True, text=True, **kw)


def test_archs_tsv(meta_model):
    proc = cli("archs", "--tsv")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == A.list_architectures()
    for name, n, desc in rows:
        assert int(n) == n_trainable(meta_model(name))  # the default construction (on meta: same count)
        assert desc


def test_archs_and_trainers_plain_lists():
    assert cli("archs").stdout.split() == A.list_architectures()
    assert cli("trainers").stdout.split() == list(trainers.exported_trainers())


def test_make_dataset_refuses_existing_and_unwritable(tmp_path):
    ok = cli("make-dataset", "-o", str(tmp_path), "--cases", "2", "--test-cases", "0")
    assert ok.returncode == 0, ok.stderr
    before = sorted(p.name for p in tmp_path.rglob("*"))
    again = cli("make-dataset", "-o", str(tmp_path), "--cases", "2", "--test-cases", "0")
    assert again.returncode != 0
    assert len(again.stderr.strip().splitlines()) == 1 and "Dataset991" in again.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad = cli("make-dataset", "-o", str(afile / "raw"), "--cases", "2")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "afile" in bad.stderr


def test_demo_unwritable_workdir(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = cli("demo", "--workdir", str(afile / "demo"), "-device", "cpu")
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "afile" in proc.stderr


def test_unknown_architecture_message_lists_registry():
    with pytest.raises(ValueError) as e:
        A.create_from_plans("nope", {}, 1, 2)
    assert "plain_unet" in str(e.value)


@pytest.mark.parametrize("argv", [["env"], ["--version"], ["-h"]])
def test_env_version_help_import_neither_torch_nor_nnunet(argv):
    """The sub-command modules are imported only when their sub-command runs (the command table, nnunet_ext.commands.COMMANDS)."""
    code = ("import sys\nfrom nnunet_ext.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'nnunetv2', 'monai', 'SimpleITK') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"
    if argv == ["-h"]:  # every sub-command is listed, the lazy ones with their help line
        from nnunet_ext.commands import COMMANDS

        for name in COMMANDS:
            assert f"    {name}" in proc.stdout, name


def test_lazy_help_lines_equal_the_registered_ones():
    """Each sub-command's module registers the help line of the command table (the one `nnunet-ext -h` shows)."""
    from nnunet_ext.cli import build_parser
    from nnunet_ext.commands import COMMANDS

    parser = build_parser("*")
    sub = next(a for a in parser._actions if a.dest == "command")
    registered = {c.dest: c.help for c in sub._choices_actions}
    for name, (_, help_) in COMMANDS.items():
        assert registered[name] == help_, name
        assert sub.choices[name].description  # the real parser, not the placeholder
