"""Every script in benchmarks/ imports and answers --help (scripts that drift from the engine's
API are caught here, not by the next person who runs them)."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def test_there_are_benchmark_scripts():
    assert {p.name for p in SCRIPTS} >= {"bench_stats.py", "fidelity.py", "hindsight.py", "pooled_cv.py",
                                         "ood_vit_nas.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_answers_help(script):
    res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("usage:"), res.stdout[:200]
