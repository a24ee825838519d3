"""What gets installed: one top-level package, `vqcodec`, whose console script no other package can shadow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VQCODEC = str(Path(sys.executable).with_name("vqcodec"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built offline from a copy of the tracked sources (so no build files land in the work tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(tmp / "dist")], check=True, capture_output=True, timeout=300)
    (built,) = (tmp / "dist").glob("vqcodec-*.whl")
    return built


def test_the_wheel_installs_only_the_vqcodec_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
        top_level = z.read(f"{dist_info}/top_level.txt").decode().split()
    assert {n.split("/")[0] for n in names} == {"vqcodec", dist_info}
    assert top_level == ["vqcodec"]
    assert "vqcodec = vqcodec.cli.main:main" in entry_points
    for expected in ("vqcodec/cli/main.py", "vqcodec/bench/runner.py", "vqcodec/models/default.safetensors"):
        assert expected in names


def test_a_top_level_cli_package_does_not_shadow_the_console_script(tmp_path: Path) -> None:
    """Another program's `cli` and `benchmarks` packages first on the path: `vqcodec` still runs vqcodec."""
    for package in ("cli", "benchmarks"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "main.py").write_text("def main():\n    print('another program')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([VQCODEC, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and "another program" not in result.stdout
    assert "compress" in result.stdout and "decompress" in result.stdout


def test_the_editable_install_resolves_the_mapped_packages(tmp_path: Path) -> None:
    """Run from elsewhere (no source folder on the path), the subpackages import from the install."""
    code = "import vqcodec.cli.main, vqcodec.bench.runner; print(vqcodec.cli.main.__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent.name == "cli"
