"""Every gallery example runs to completion in its reduced (fast) mode."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("plot_*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 6
    readme = EXAMPLES[0].parent / "README.rst"
    assert readme.is_file(), "sphinx-gallery needs examples/README.rst"


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(script, tmp_path):
    env = {**os.environ, "IMPLICIT_INVERSE_FAST": "1", "MPLBACKEND": "agg"}
    env.setdefault("OMP_NUM_THREADS", "1")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{script.name} failed with exit status {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}")
    assert not list(tmp_path.iterdir()), "examples must not write files"
