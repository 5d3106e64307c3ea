"""Docs stay true: every README block marked `<!-- runnable -->` runs, in a scratch folder."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"<!-- runnable -->\s*```bash\n(.*?)```", re.S)


def runnable_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_readme_has_runnable_blocks():
    assert runnable_blocks(), "the README lost its runnable blocks"


@pytest.mark.parametrize("index", range(len(runnable_blocks())))
def test_readme_block_runs(index, tmp_path):
    pytest.importorskip("torch")
    script = runnable_blocks()[index]
    bindir = Path(sys.executable).parent  # `posezoo` and `python` of this environment
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", MPLBACKEND="Agg",
               POSEZOO_HOME=str(tmp_path / "home"))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"README block {index} failed:\n{script}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    if "my-model.onnx" in script:  # the workflow block: its outputs really exist
        assert (tmp_path / "my-model.onnx").is_file() and list((tmp_path / "results").glob("mouse1*.h5"))
