"""The command line as a person meets it: --help, unknown names, missing flags, evolve
overrides (--set, --bench) and the cache verb."""
from __future__ import annotations

import argparse
import json

import pytest
import yaml

from autoprox.cli.flags import HelpFormatter, apply_sets, bench_files
from autoprox.cli.main import build_parser, main
from autoprox.core.config import save_config
from autoprox.data.benchmark import load_benchmark
from autoprox.discovery.config import EvolveConfig
from autoprox.discovery.objective import ObjectiveConfig
from autoprox.discovery.variation import VariationConfig
from autoprox.stats.base import StatsConfig
from autoprox.stats.provider import ScoringConfig


def test_every_help_shows_choices_and_defaults(capsys):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"bench", "stats", "zoo", "fit", "export", "build", "evolve", "search", "cache"}
    assert all(p.formatter_class is HelpFormatter for p in sub.choices.values())
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{random,evolution}" in text and "(default: serial)" in text and "(default: 2)" in text
    assert "search space: autoformer, autoformer-base, autoformer-small, autoformer-tiny, pit" in text.replace("- ", "-")
    assert "(default: None)" not in text
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "(default: text)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("argv,msg", [
    (["bench", "--space", "pit", "--proxy", "snp"], "unknown proxy 'snp' (did you mean 'snip'?)"),
    (["bench", "--space", "pitt", "--proxy", "params"], "unknown search space 'pitt' (did you mean 'pit'?)"),
    (["search", "--space", "pit", "--proxy", "naswt"], "unknown proxy 'naswt' (did you mean 'naswot'?)"),
    (["search", "--space", "autoformr", "--proxy", "snip"], "(did you mean 'autoformer'?)"),
    (["search", "--space", "pit"], "search needs --proxy (or 'proxy:' in --config)"),
    (["search", "--proxy", "snip"], "search needs --space (or 'space:' in --config)"),
])
def test_bad_names_and_missing_flags_are_one_line(tmp_path, capsys, argv, msg):
    out = tmp_path / "o"
    assert main(argv + ["--out", str(out)]) == 2
    cap = capsys.readouterr()
    assert msg in cap.err and cap.err.count("\n") == 1 and cap.out == "" and not out.exists()


def test_apply_sets_parses_yaml_values():
    data = {"steps": 20, "objective": {"limit": None}}
    apply_sets(data, ["steps=2", "objective.limit=20", "objective.spaces=[pit, autoformer]", "mode=paper"])
    assert data == {"steps": 2, "mode": "paper", "objective": {"limit": 20, "spaces": ["pit", "autoformer"]}}
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        apply_sets({}, ["steps"])
    with pytest.raises(ValueError, match="steps is a value, not a section"):
        apply_sets({"steps": 2}, ["steps.x=1"])
    assert bench_files(["a.json"], ["pit"]) == {"pit": "a.json"}
    assert bench_files(["pit=a.json", "autoformer=b.json"], ["pit", "autoformer"]) == \
        {"pit": "a.json", "autoformer": "b.json"}
    with pytest.raises(ValueError, match="give --bench SPACE=FILE"):
        bench_files(["a.json"], ["pit", "autoformer"])


@pytest.fixture
def tiny_config(tmp_path, tiny_batch_cfg):
    scoring = ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4),
                            cache_dir=str(tmp_path / "cache"))
    obj = ObjectiveConfig(spaces=("pit",), limit=12, val_fraction=0.25, test_fraction=0.25, scoring=scoring)
    cfg = EvolveConfig(population=4, steps=3, offspring=4, hall_of_fame=2, seed_proxies=("params",),
                       objective=obj, variation=VariationConfig(leaves=("weight",), single_leaves=("num_params",),
                                                                max_nodes=6))
    save_config(cfg, tmp_path / "tiny.yaml")
    return tmp_path / "tiny.yaml"


@pytest.mark.parametrize("extra,msg", [
    (["--set", "stepz=2"], "unknown key(s) ['stepz']"),
    (["--set", "steps=two"], "expected int, got 'two'"),
    (["--set", "objective.limt=5"], "unknown key(s) ['limt']"),
    (["--bench", "autoformer=x.json"], "objective.bench names space(s) ['autoformer']"),
])
def test_evolve_overrides_are_checked_before_anything_is_written(tiny_config, tmp_path, capsys, extra, msg):
    out = tmp_path / "o"
    assert main(["evolve", "--config", str(tiny_config), "--out", str(out), *extra]) == 2
    assert msg in capsys.readouterr().err and not out.exists()


def test_evolve_with_set_and_a_user_benchmark(tiny_config, tmp_path, capsys):
    """A user file with its own target 'mine' (the c100 KD accuracy, renamed), chosen by --bench,
    and --set overrides: the run reads the file and records what it used."""
    b = load_benchmark("pit")
    recs = [{"arch": a, "mine_acc": acc["c100_kd"]} for a, acc in zip(b.archs[:12], b.accs[:12])]
    (tmp_path / "mine.json").write_text(json.dumps(recs))
    out = tmp_path / "o"
    assert main(["evolve", "--config", str(tiny_config), "--out", str(out), "--bench", str(tmp_path / "mine.json"),
                 "--set", "steps=1", "--set", "objective.targets=[mine]", "--set", "objective.limit=8"]) == 0
    cfg = yaml.safe_load(open(out / "config.yaml"))
    assert cfg["steps"] == 1 and cfg["objective"]["targets"] == ["mine"] and cfg["objective"]["limit"] == 8
    assert cfg["objective"]["bench"] == {"pit": str(tmp_path / "mine.json")}
    rows = {r["expression"]: r for r in map(json.loads, open(out / "history.jsonl"))}
    assert list(rows["num_params"]["per_space"]["pit"]["train_tau"]) == ["mine"]


def test_cache_info_and_clean(tmp_path, capsys):
    root = tmp_path / "cache"
    (root / "pit" / "ab").mkdir(parents=True)
    (root / "pit" / "ab" / "k1.apx").write_bytes(b"x" * 1500)
    (root / "autoformer" / "cd").mkdir(parents=True)
    (root / "autoformer" / "cd" / "k2.apx").write_bytes(b"x" * 500)
    (root / "pit" / "ab" / ".k3.apx.123.tmp").write_bytes(b"x" * 7)
    assert main(["cache", "info", "--cache-dir", str(root)]) == 0
    assert capsys.readouterr().out.strip() == f"{root}: 2 entries, 0.00 GB"
    assert main(["cache", "clean", "--cache-dir", str(root)]) == 0
    assert capsys.readouterr().out.strip() == f"removed 1 temporary file(s) under {root}"
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["k1.apx", "k2.apx"]
    assert main(["cache", "info", "--cache-dir", str(tmp_path / "none")]) == 0
    assert "0 entries" in capsys.readouterr().out


@pytest.mark.parametrize("verb,argv,resume", [
    ("evolve", ["evolve", "--config", "runs/quick.yaml", "--out", "runs/q"],
     "autoprox evolve --config runs/quick.yaml --out runs/q --resume"),
    ("stats", ["stats", "--space", "pit", "--limit", "3"], "autoprox stats --space pit --limit 3")])
def test_ctrl_c_is_one_line_with_the_resume_command(verb, argv, resume, monkeypatch, capsys):
    import autoprox.cli.main as M

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(M, f"cmd_{verb}", interrupted)
    assert M.main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(f"Continue with: {resume}"), err


def test_every_verb_help_has_a_description_and_examples(capsys):
    from autoprox.cli.main import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, p in sub.choices.items():
        text = p.format_help()
        assert p.description and text.count(f"\n  autoprox {name}") >= 2, name
        assert "(default 60) (default" not in text, name
    cache = sub.choices["cache"].format_help()
    assert "--teacher" not in cache and "--gpus-per-worker" not in cache and "--no-cache" not in cache


def test_a_cv_run_counts_the_steps_of_every_fold_in_one_line(tiny_config, tmp_path, capsys):
    """``--cv 2`` runs 3 evolutions of 3 steps: the progress counts 9 steps and names the run, instead
    of starting again at 0 of 3 for each fold (its ETA then promised hours for minutes of work)."""
    assert main(["evolve", "--config", str(tiny_config), "--out", str(tmp_path / "cv"), "--cv", "2"]) == 0
    last = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("evolve: ")][-1]
    assert last.startswith("evolve: 9/9 in ") and "  final: evals " in last, last
