"""``benchmarks/fill.py``: each plan step becomes one ``autoprox stats`` command; a finished step is
recorded beside the cache and skipped by the next run; a stopped step stops the fill."""
import importlib.util
import json
import sys
from pathlib import Path

import yaml

from tests.test_native_bench import native_records

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "fill.py"


def _fill():
    spec = importlib.util.spec_from_file_location("fill", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_steps_become_stats_commands_and_resume_from_the_done_record(tmp_path, monkeypatch):
    fill = _fill()
    (tmp_path / "ood-vit-nas").mkdir()
    (tmp_path / "ood-vit-nas" / "tiny.json").write_text(json.dumps(native_records("autoformer-tiny", 6)))
    plan = tmp_path / "plan.yaml"
    steps = [{"space": "autoformer-tiny", "file": "tiny.json", "subset": 4, "passes": ["features"], "est_s": 2},
             {"space": "autoformer-tiny", "file": "tiny.json", "batch_size": 8, "passes": ["features", "zen"],
              "est_s": 1}]
    plan.write_text(yaml.safe_dump({"steps": steps}))
    ran = []
    monkeypatch.setattr(fill, "run_step", lambda cmd, log: ran.append(cmd) or (1 if len(ran) == 2 else 0))
    argv = ["fill.py", "--shared", str(tmp_path), "--plan", str(plan), "--log", str(tmp_path / "fill.log"),
            "--cache-dir", str(tmp_path / "cache")]
    monkeypatch.setattr(sys, "argv", argv)
    assert fill.main() == 1  # the second step stopped: the fill stops with its exit code
    tiny = str(tmp_path / "ood-vit-nas" / "tiny.json")
    assert ran[0] == ["autoprox", "stats", "--space", "autoformer-tiny", "--backend", "ray", "--workers", "2",
                      "--cache-dir", str(tmp_path / "cache"), "--bench", tiny, "--subset", "4", "--pass", "features"]
    assert ran[1][-6:] == ["--batch-size", "8", "--pass", "features", "--pass", "zen"]
    assert (tmp_path / "cache" / "fill-done.txt").read_text().splitlines() == [fill.step_key(steps[0])]
    log = (tmp_path / "fill.log").read_text()
    assert "fill: 0 of 2 steps done; estimate for the rest 0:00:14" in log  # 4 archs x 2 s + 6 x 1 s
    assert "subset=4 (4 archs, 4 to compute): autoprox stats" in log  # the step's --dry-run: nothing cached
    assert "step stopped with exit 1" in log
    done = next(ln for ln in log.splitlines() if "step done in" in ln)
    pace = float(done.split("s/arch")[0].split("(")[-1]) / 2  # the first step's seconds per arch / its 2 s
    assert f"1 steps left, estimate 0:00:06 at the plan's rates, " in done and f"({pace:.2f}x)" in done
    ran.clear()
    assert fill.main() == 0  # the first step is skipped at once; the second runs again and ends
    assert len(ran) == 1 and ran[0][-6:] == ["--batch-size", "8", "--pass", "features", "--pass", "zen"]
    assert "fill: 1 of 2 steps done" in (tmp_path / "fill.log").read_text()
