"""Settings are declared once (onnxgate/settings.py) and reach the CLI, onnxgate.toml and the API.

The mechanism: each option is a field of one stage dataclass; argparse flags, TOML keys and
API keywords are generated from the field list. These tests walk every field, so a field
added tomorrow is checked by them without a line changed here.
"""

from __future__ import annotations

import dataclasses

import pytest

from onnxgate.cli import build_parser
from onnxgate.errors import OnnxgateError
from onnxgate.pipelines.config import parse_config
from onnxgate.settings import STAGES, Settings, SettingsError, known_names

ALL_FIELDS = [(stage, f) for stage, cls in STAGES.items() for f in dataclasses.fields(cls)]


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _cli_words(f: dataclasses.Field, value: object) -> list[str]:
    if f.metadata["kind"] == "flag":
        return [_flag(f)]
    if f.metadata["kind"] == "list":
        return [w for v in value for w in (_flag(f), str(v))]
    if isinstance(value, tuple):
        return [_flag(f), ",".join(value)]
    return [_flag(f), str(value)]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@pytest.mark.parametrize("stage,f", ALL_FIELDS, ids=[f.name for _, f in ALL_FIELDS])
def test_every_option_reaches_cli_toml_and_api_alike(stage, f, tmp_path):
    example = f.metadata["example"]
    assert example is not None, f"{f.name}: declare an example value so this test can check it"
    api = Settings.from_kwargs(**{f.name: example})
    assert getattr(getattr(api, stage), f.name) != f.default or example == f.default, f.name
    for command in f.metadata["commands"]:
        source = ["x.skops"] if command != "validate" else ["x.skops", "m.onnx"]
        extra = ["-o", "o.onnx"] if command == "convert" else []
        args = build_parser().parse_args([command, *source, *extra, *_cli_words(f, example)])
        assert Settings.from_namespace(args) == api, f"{command} {_flag(f)} differs from the API keyword {f.name}"
    if f.metadata["toml"]:
        text = f'[[model]]\nname = "m"\nsource = "x.skops"\nversion = "1"\n{f.name} = {_toml_value(example)}\n'
        spec = parse_config(text, tmp_path / "onnxgate.toml", check_paths=False).models[0]
        assert spec.settings == api, f"onnxgate.toml key {f.name} differs from the API keyword"


def test_a_new_field_is_an_option_everywhere(monkeypatch, tmp_path):
    """Adding one field to a stage class is the whole change: the flag, the key and the keyword exist."""
    from onnxgate import settings as mod

    @dataclasses.dataclass(frozen=True)
    class Speed(mod.SpeedSettings):
        shiny: int | None = mod.option(None, "a new option", metavar="N", parse=mod._positive_int, example=3)

    monkeypatch.setitem(mod.STAGES, "speed", Speed)
    api = Settings.from_kwargs(shiny=3)
    assert api.speed.shiny == 3
    cli = Settings.from_namespace(build_parser().parse_args(["run", "x.skops", "--shiny", "3"]))
    text = '[[model]]\nname = "m"\nsource = "x"\nversion = "1"\nshiny = 3\n'
    toml = parse_config(text, tmp_path / "onnxgate.toml", check_paths=False).models[0].settings
    assert cli == api == toml
    with pytest.raises(SystemExit):  # argparse refuses a bad value with exit 2
        build_parser().parse_args(["run", "x.skops", "--shiny", "0"])


def test_unknown_names_are_refused_with_the_known_ones(tmp_path):
    with pytest.raises(SettingsError) as err:
        Settings.from_kwargs(atoll=1e-3)
    assert "atoll" in str(err.value) and "atol" in err.value.hint
    with pytest.raises(OnnxgateError) as err:
        parse_config('[[model]]\nname = "m"\nsource = "x"\nversion = "1"\natoll = 1\n', tmp_path / "onnxgate.toml", check_paths=False)
    assert "atoll" in err.value.message and ":5:" in err.value.message and "atol" in err.value.hint


def test_bad_values_fail_before_any_work():
    for kwargs in ({"atol": -1}, {"timeout": 0}, {"dims": ["batch"]}, {"opt_levels": "fastest"}, {"threads": 0}):
        with pytest.raises(OnnxgateError):
            Settings.from_kwargs(**kwargs)


def test_toml_tables_and_cli_lists_are_one_value(tmp_path):
    text = '[[model]]\nname = "m"\nsource = "x"\nversion = "1"\ntol = { out = [1e-4, 1e-3] }\ndims = { batch = 4 }\n'
    spec = parse_config(text, tmp_path / "onnxgate.toml", check_paths=False).models[0]
    cli = Settings.from_namespace(build_parser().parse_args(["run", "x", "--tol", "out=0.0001:0.001", "--dim", "batch=4"]))
    assert spec.settings.compare.policy().per_output == cli.compare.policy().per_output
    assert spec.settings.inputs.dim_map() == cli.inputs.dim_map() == {"batch": 4}


def test_settings_travel_as_plain_data():
    s = Settings.from_kwargs(atol=1e-3, dims=["batch=3"], providers="CPU", edge=True, timeout=5)
    assert Settings.from_dict(s.as_dict()) == s
    assert "atol" in known_names() and "edge" in known_names()


@pytest.fixture(scope="module")
def logreg(tmp_path_factory):
    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from skl2onnx import to_onnx

    X, y = load_iris(return_X_y=True)
    d = tmp_path_factory.mktemp("names")
    model = LogisticRegression(max_iter=500).fit(X, y)
    sio.dump(model, d / "lr.skops")
    np.save(d / "x.npy", X[:10].astype(np.float32))
    (d / "lr.onnx").write_bytes(to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False}).SerializeToString())
    return d


@pytest.mark.parametrize("flag,value,lists", [
    ("--tol", "nosuch=1e-3:1e-3", "label, probabilities"),
    ("--dim", "nosuch=3", "X:0, X:1, batch"),
    ("--input-range", "nosuch=0:1", "X"),
])
def test_names_that_refer_to_nothing_in_the_model_are_refused(logreg, flag, value, lists):
    from tests.conftest import assert_user_error, run_onnxgate

    d = logreg
    result = run_onnxgate("validate", d / "lr.skops", d / "lr.onnx", "--sample", d / "x.npy", flag, value)
    assert_user_error(result, f"{flag} nosuch", lists)


def test_unknown_api_keyword_and_cli_flag_are_exit_2(logreg, tmp_path):
    import onnxgate
    from tests.conftest import run_onnxgate

    with pytest.raises(SettingsError, match="unknown keyword 'tolerance'"):
        onnxgate.validate(str(logreg / "lr.skops"), str(logreg / "lr.onnx"), tolerance=1)
    assert run_onnxgate("validate", logreg / "lr.skops", logreg / "lr.onnx", "--tolerance", "1").code == 2
