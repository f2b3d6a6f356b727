"""Every command's options: each numeric option has a rule, each rule rejects what it should before any work,
and the CLI answers --help and option errors without importing torch."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from diffrep import cli
from diffrep.options import rules

COMMANDS = {" ".join(words): spec for words, (_, spec, _, _) in cli.CONFIGURED.items()}


def _leaves(cfg: dict, prefix: str = ""):
    for key, value in cfg.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _bad_value(rule: str):
    """A value the rule must reject."""
    rule = rule.removesuffix("|null")
    if rule.startswith(("int>=", "int>")):
        bound = float(rule.split(">")[-1].lstrip("="))
        return int(bound) - 1 if ">=" in rule else int(bound)
    if rule.startswith(("float>=", "float>")):
        bound = float(rule.split(">")[-1].lstrip("="))
        return bound - 1 if ">=" in rule else bound
    table = {"fraction": 0, "unit": 1.5, "bool": "maybe", "size": 0, "ints>=0": "[-1]", "ints>=1": "[0]",
             "ints>=2": "[1]", "floats": "[]", "fractions": "[0]", "devices": 0, "class": -1}
    if rule in table:
        return table[rule]
    return "no-such-choice" if rule.startswith("in:") else -1e9 if rule.startswith("range:") else None


@pytest.mark.parametrize("command", COMMANDS)
def test_every_numeric_option_has_a_rule(command):
    defaults, option_rules = cli.options(COMMANDS[command])
    numeric = [key for key, value in _leaves(defaults)
               if isinstance(value, (int, float)) and not isinstance(value, bool)]
    missing = [key for key in numeric if key not in option_rules]
    assert not missing, f"{command}: options without a rule: {missing}"
    for key in option_rules:  # and every rule names an option the command has
        assert key in dict(_leaves(defaults)) or key.startswith("data."), f"{command}: rule for unknown {key}"


CASES = [(command, key, rule) for command, spec in COMMANDS.items() for key, rule in cli.options(spec)[1].items()
         if key in dict(_leaves(cli.options(spec)[0]))]


@pytest.mark.parametrize("command, key, rule", CASES, ids=[f"{c}:{k}" for c, k, _ in CASES])
def test_each_rule_rejects_a_bad_value_before_any_work(command, key, rule, tmp_path, capsys):
    value = _bad_value(rule)
    assert value is not None, f"no bad value for rule {rule}"
    out = tmp_path / "out"
    code = cli.main([*command.split(), f"--{key}", str(value), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"--{key} must be" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("rule, good, bad", [
    ("int>=1", [1, 7], [0, 1.5, True, "3", None]),
    ("int>=0|null", [0, None], [-1]),
    ("float>0", [1e-4, 3], [0, -1, float("nan"), True]),
    ("fraction", [0.01, 1, 1.0], [0, 1.01, None]),
    ("unit", [0, 0.5, 1], [-0.1, 1.1]),
    ("size", [1, 500, 0.5], [0, 1.5, -3]),
    ("in:ddim,ddpm", ["ddim"], ["DDIM", 1]),
    ("in:1,3|null", [1, 3, None], [2, "1"]),
    ("ints>=0", [[0, 10], "0,10,50", 5], [[], "a,b", [-1]]),
    ("fractions", [[0.01, 0.1]], [[0], [1.5], []]),
    ("range:0..0.9", [0, 0.9], [0.95, -0.1]),
    ("devices", [1, "auto", -1, [0, 1], "0,1"], [0, -2, "gpu", []]),
    ("class", [0, "Trouser"], [-1, "", 1.5]),
])
def test_rules(rule, good, bad):
    assert all(rules.valid(rule, value) for value in good)
    assert not any(rules.valid(rule, value) for value in bad)


def test_help_and_option_errors_import_no_torch():
    code = ("import sys; from diffrep import cli\n"
            "for argv in (['distill', '--help'], ['probe', '--batch_size', '0'], ['pdae', 'fit', '--help']):\n"
            "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'diffusers', 'numpy'})\n"
            "print('heavy:', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "heavy: []" in proc.stdout, proc.stdout + proc.stderr


def test_help_shows_each_option_once_with_the_comments_of_its_table(capsys):
    with pytest.raises(SystemExit):
        cli.main(["distill", "--help"])
    text = capsys.readouterr().out
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("  --") and "." in line.split()[0]]
    assert len(listed) == len(set(listed)) and "--policy.baseline_momentum" in listed
    assert re.search(r"  --loss\.name hint +# hint \| at \| rkd\n", text)  # the comment beside it
    assert "  # path null: the shipped teacher (see diffrep teacher info)\n  --teacher.path null" in text  # the group's
    assert re.search(r"--data\.root null +# overrides the dataset's default folder", text)  # from a spread table
    with pytest.raises(SystemExit):
        cli.main(["dpm", "fit", "--help"])
    text = capsys.readouterr().out
    assert "  # diffusers UNet2DModel options; sample_size and channels come from data\n  --model.block_out" in text
