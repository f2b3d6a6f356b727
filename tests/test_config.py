import pytest

from diffrep import config
from diffrep.errors import UserError

DEFAULTS = {"data": {"name": "fashion-mnist", "labels": 1.0}, "optim": {"lr": 0.1}, "seed": 0}


def test_overrides_parse_yaml_scalars_and_scientific_floats():
    parsed = config.parse_overrides(["--optim.lr", "1e-3", "--seed=3", "--data.name", "digits",
                                     "--x", "[1, 2]", "--y", "null"])
    assert parsed == {"optim": {"lr": 0.001}, "seed": 3, "data": {"name": "digits"}, "x": [1, 2], "y": None}


def test_resolve_layers_defaults_file_and_command_line(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("optim:\n  lr: 1e-2\ndata:\n  labels: 0.1\n")
    cfg = config.resolve(DEFAULTS, file, ["--data.labels", "0.01"])
    assert cfg == {"data": {"name": "fashion-mnist", "labels": 0.01}, "optim": {"lr": 0.01}, "seed": 0}
    assert DEFAULTS["optim"]["lr"] == 0.1  # defaults untouched


def test_unknown_option_lists_valid_ones():
    with pytest.raises(UserError, match=r"unknown option 'optim.lrr'; valid options: optim.lr"):
        config.resolve(DEFAULTS, None, ["--optim.lrr", "1"])


@pytest.mark.parametrize("args", [["positional"], ["--seed"]])
def test_malformed_command_lines_are_user_errors(args):
    with pytest.raises(UserError):
        config.parse_overrides(args)


def test_bad_config_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        config.resolve(DEFAULTS, tmp_path / "missing.yaml", [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config.resolve(DEFAULTS, bad, [])
