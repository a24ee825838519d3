"""The command line starts light and fails in one line: usage errors, --help and info run without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import noise_image
from vqcodec import codec, container

VQCODEC = str(Path(sys.executable).with_name("vqcodec"))

PROBE = """
import atexit, json, os, sys
from importlib.metadata import entry_points
atexit.register(lambda: open(os.environ["PROBE_OUT"], "w").write(json.dumps(sorted(sys.modules))))
(script,) = entry_points(group="console_scripts", name="vqcodec")
sys.argv = ["vqcodec", *sys.argv[1:]]
script.load()()
"""


@pytest.fixture(scope="module")
def vqz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "small.vqz"
    path.write_bytes(codec.compress(noise_image(24, 16), "default", 1))
    return path


def modules_loaded(*args: str | Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the console script's entry point with `args` and return what it imported."""
    out = tmp_path / "modules.json"
    env = {**os.environ, "PROBE_OUT": str(out)}
    result = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=120)
    return result, json.loads(out.read_text())


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("compress", "--help"), ("train", "--help"), ("info", "VQZ"),
                                  ("info", "missing.vqz"), ("compress", "--bogus"), ("decompress",)])
def test_help_info_and_usage_errors_do_not_import_torch(args: tuple[str, ...], vqz: Path, tmp_path: Path) -> None:
    args = tuple(str(vqz) if a == "VQZ" else a for a in args)
    result, modules = modules_loaded(*args, tmp_path=tmp_path)
    assert result.returncode in (0, 1, 2), result.stderr
    assert "Traceback" not in result.stderr
    assert "torch" not in modules


def test_version_names_the_package_format_and_models(tmp_path: Path) -> None:
    import vqcodec

    result, modules = modules_loaded("--version", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"vqcodec {vqcodec.__version__} (.vqz formats {container.VERSION}-6; "
                                     f"models: {', '.join(sorted(vqcodec.shipped_models()))})")
    assert "default" in result.stdout and "torch" not in modules


def test_info_still_reports_the_file_without_torch(vqz: Path, tmp_path: Path) -> None:
    result, modules = modules_loaded("info", vqz, tmp_path=tmp_path)
    stages = container.read_header(vqz.read_bytes()).stages
    assert result.returncode == 0 and "24x16 RGB" in result.stdout and f", {stages} stage" in result.stdout
    assert "torch" not in modules


def test_import_vqcodec_is_light_until_the_codec_is_used() -> None:
    code = ("import sys, vqcodec; from PIL import Image; light = 'torch' not in sys.modules; "
            "assert 'VQZ' in Image.OPEN and callable(vqcodec.compress) and vqcodec.VqzError; "
            "print(light, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("args", [("compress", "--bogus"), ("compress",), ("nosuchcommand",),
                                  ("decompress", "x.vqz", "--quality", "abc"), ("compress", "x.png", "--jobs", "0"),
                                  ("train",)])
def test_usage_errors_are_one_line_with_exit_code_2(args: tuple[str, ...]) -> None:
    result = subprocess.run([VQCODEC, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "--help" in lines[0] and result.stdout == ""


def test_no_arguments_prints_the_help() -> None:
    result = subprocess.run([VQCODEC], capture_output=True, text=True, timeout=120)
    assert "compress" in result.stdout + result.stderr and "Traceback" not in result.stderr
