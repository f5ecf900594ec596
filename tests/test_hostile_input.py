"""Bad numbers, bad output paths, nested and binary TOML/JSON: one line, exit 2, before any work."""

from __future__ import annotations

import pytest

from onnxgate.settings import Settings, SettingsError
from tests.conftest import assert_user_error

BAD_NUMBERS = [
    ("--rtol", "inf"), ("--rtol", "2"), ("--atol", "1e300"), ("--atol", "nan"), ("--atol", "-1"),
    ("--timeout", "0"), ("--timeout", "-1"), ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "1e300"),
    ("--seed", "-1"), ("--seed", "1e30"), ("--threads", "100000000"), ("--threads", "0"),
    ("--benchmark-seconds", "inf"), ("--tol", "y=inf:0"), ("--tol", "y=0:1e300"),
]


@pytest.mark.parametrize("flag, value", BAD_NUMBERS, ids=[f"{f}={v}" for f, v in BAD_NUMBERS])
def test_each_bad_number_is_refused_on_the_command_line(cli, tmp_path, flag, value):
    r = cli("validate", tmp_path / "missing.skops", tmp_path / "missing.onnx", flag, value)
    assert_user_error(r, flag if flag != "--tol" else "--tol")


@pytest.mark.parametrize("value", ["-5", "0", "6", "100000"])
def test_an_opset_outside_the_supported_range_is_refused(cli, tmp_path, value):
    assert_user_error(cli("convert", tmp_path / "missing.skops", "-o", tmp_path / "m.onnx", "--opset", value), "--opset", "outside")


@pytest.mark.parametrize("kwargs", [{"rtol": float("inf")}, {"atol": 1e300}, {"timeout": float("inf")}, {"seed": -1},
                                    {"threads": 10**8}, {"opset": -5}, {"timeout": float("nan")}])
def test_the_api_and_toml_refuse_the_same_numbers(kwargs, tmp_path):
    from onnxgate.pipelines.config import ConfigError, parse_config

    with pytest.raises(SettingsError):
        Settings.from_kwargs(**kwargs)
    [(key, value)] = kwargs.items()
    text = f'[[model]]\nname = "m"\nsource = "x"\nversion = "1"\n{key} = {_toml(value)}\n'
    with pytest.raises(ConfigError):
        parse_config(text, tmp_path / "onnxgate.toml", check_paths=False)


def _toml(value: float) -> str:
    return {float("inf"): "inf"}.get(value, "nan" if value != value else repr(value))


def test_good_numbers_still_pass():
    s = Settings.from_kwargs(rtol=1e-3, atol=0, timeout=30, seed=0, threads=4, opset=17)
    assert (s.compare.rtol, s.runtime.timeout, s.inputs.seed, s.speed.threads, s.convert.opset) == (1e-3, 30, 0, 4, 17)


@pytest.mark.parametrize("target", ["/proc/version", "/proc", "/proc/self/status"])
def test_output_paths_in_proc_are_refused_before_any_work(cli, tmp_path, target):
    r = cli("zoo", "verify", tmp_path / "no-such-manifest.json", "--report", target)
    assert_user_error(r, target)


def test_a_socket_output_path_is_refused(tmp_path):
    import socket

    from onnxgate._io import check_output_path
    from onnxgate.errors import OutputPathError

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s"))
    try:
        with pytest.raises(OutputPathError, match="socket"):
            check_output_path(tmp_path / "s", "report")
    finally:
        sock.close()


def test_written_files_follow_the_umask(tmp_path):
    import os

    from onnxgate._io import write_atomic

    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


DEEP = "a = " + "[" * 50_000 + "]" * 50_000 + "\n"


@pytest.mark.parametrize("content", [DEEP.encode(), b"\xff\xfe\x00\x01binary\x00", b'[[model]]\nname = "\xff"\n'],
                         ids=["nested", "binary", "bad-utf8"])
def test_nested_or_binary_toml_is_one_line(cli, tmp_path, content):
    (tmp_path / "onnxgate.toml").write_bytes(content)
    assert_user_error(cli("gate", "--config", tmp_path / "onnxgate.toml"), "onnxgate.toml")


@pytest.mark.parametrize("content", [("[" * 50_000 + "]" * 50_000).encode(), b"\xff\xfe\x00binary"], ids=["nested", "binary"])
def test_nested_or_binary_json_manifest_is_one_line(cli, tmp_path, content):
    (tmp_path / "ONNX_HUB_MANIFEST.json").write_bytes(content)
    assert_user_error(cli("zoo", "verify", tmp_path / "ONNX_HUB_MANIFEST.json"), "ONNX_HUB_MANIFEST.json")
