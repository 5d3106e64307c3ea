"""The README's install lines for the light runtime work: a wheel built from the repository installs
into a fresh environment, finds its built-in zoo model through the entry point, and runs it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _version() -> str:
    return re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)


def test_readme_wheel_lines_install_a_working_light_runtime(tmp_path):
    text = README.read_text()
    wheel_name = f"posezoo-{_version()}-py3-none-any.whl"
    assert "pip wheel --no-deps -w dist ./posezoo" in text and f"pip install dist/{wheel_name}" in text

    # The README's `pip wheel`, offline (the build backend comes from this environment), on a copy
    # of the sources: setuptools writes build/ beside them.
    source = tmp_path / "src"
    for item in ("pyproject.toml", "README.md", "runtime", "zoo", "training", "export"):
        copy = shutil.copytree if (REPO / item).is_dir() else shutil.copy
        source.mkdir(exist_ok=True)
        copy(REPO / item, source / item, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (REPO / item).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel = tmp_path / "dist" / wheel_name
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = [p.parent.relative_to(REPO).as_posix() for folder in ("runtime", "zoo", "training", "export")
                for p in (REPO / folder).rglob("__init__.py")]
    for expected in [f"posezoo/{p}/__init__.py" for p in packages] + [
            "posezoo/zoo/index.json", "posezoo/zoo/models/synthetic-mouse/1.0.0/synthetic-mouse.onnx"]:
        assert expected in names, f"{expected} is not in the wheel: list its package in pyproject.toml"
    entry_points = zipfile.ZipFile(wheel).read(f"posezoo-{_version()}.dist-info/entry_points.txt").decode()
    assert "[posezoo.resolvers]" in entry_points and "posezoo.zoo.resolve:resolve_model" in entry_points

    # A fresh environment whose third-party packages are this one's (no download), then the README's
    # `pip install dist/...whl` into it.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # A path added by a .pth file has its own .pth files ignored: this checkout's editable install
    # stays out, only the dependencies come in.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)

    env = dict(os.environ, POSEZOO_HOME=str(tmp_path / "home"), POSEZOO_OFFLINE="1")
    code = ("import sys, posezoo.runtime, posezoo.zoo; print(posezoo.runtime.__file__); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow')))")
    where, frameworks = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                                       cwd=tmp_path, env=env).stdout.split("\n")[:2]
    assert where.startswith(site) and frameworks == "[]"
    out = subprocess.run([str(venv / "bin" / "posezoo"), "inspect", "zoo:synthetic-mouse"], capture_output=True,
                         text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "keypoints    4: snout, leftear, rightear, tailbase" in out.stdout
