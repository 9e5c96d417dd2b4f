"""The package as users install it: a built wheel carries every preset, and
an installed (non-editable) vaa finds them by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vaa.config import load_preset

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "src" / "vaa" / "configs"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of the source tree (the build writes
    egg-info and build/ folders, which stay out of the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."],
        cwd=src,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = out.glob("vaa-*.whl")
    return built


def test_the_wheel_holds_every_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in PRESETS.glob("*.yaml"))
    assert len(shipped) >= 10
    missing = [name for name in shipped if f"vaa/configs/{name}" not in names]
    assert not missing, f"presets missing from the wheel: {missing}"


def test_an_installed_vaa_finds_its_presets_by_name(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what installing a wheel amounts to for a pure-Python package
    script = (
        "import vaa, vaa.config as c; from pathlib import Path; "
        f"assert Path(vaa.__file__).is_relative_to(Path(r'{site}')), vaa.__file__; "
        "names = sorted(c.shipped_presets()); [c.load_preset(n) for n in names]; "
        "print(' '.join(names)); print(c.load_preset('demo-vaa').vaa.injection)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    listed, injection = done.stdout.splitlines()
    assert listed.split() == sorted(p.stem for p in PRESETS.glob("*.yaml"))
    assert injection == load_preset("demo-vaa").vaa.injection  # `extends:` chains resolve inside the installed package


def test_an_installed_vaa_generates_the_demo_set_from_its_packaged_word_lists(wheel, tmp_path):
    assert "vaa/demo/words.json" in set(zipfile.ZipFile(wheel).namelist())
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import json, vaa, vaa.demo as d; from pathlib import Path; "
        f"assert Path(d.__file__).is_relative_to(Path(r'{site}')), d.__file__; "
        "print(json.dumps([[p.a, p.b, p.label] for p in d.make_demo_pairs(40, 5)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    from vaa.demo import make_demo_pairs

    assert done.stdout.strip() == json.dumps([[p.a, p.b, p.label] for p in make_demo_pairs(40, 5)])
