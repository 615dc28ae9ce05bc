import csv

import pytest
import yaml

from autoprox.cli.main import main


def test_bench_params_autoformer(tmp_path, capsys):
    assert main(["bench", "--space", "autoformer", "--proxy", "params", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| params | c100_kd | 100 | 0.548 |" in out
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    assert [r["dataset"] for r in rows] == ["c100_kd", "flower_kd", "chaoyang_kd", "JCM"]
    assert float(rows[-1]["kendall"]) == pytest.approx(0.5209, abs=1e-4)
    cfg = yaml.safe_load(open(tmp_path / "config.yaml"))
    assert cfg["space"] == "autoformer" and cfg["scoring"]["batch"]["source"] == "synthetic"


def test_bench_pit_with_user_file_and_targets(tmp_path, capsys):
    import json
    recs = [{"arch": {"base_dim": 16 + 8 * (i % 4), "mlp_ratio": 4, "depth": [2, 6, 4 + 2 * (i // 4)],
                      "num_heads": [2, 4, 8]}, "mine_acc": float(i % 4)} for i in range(8)]
    (tmp_path / "b.json").write_text(json.dumps(recs))
    assert main(["bench", "--space", "pit", "--bench", str(tmp_path / "b.json"), "--proxy", "params",
                 "--out", str(tmp_path / "o")]) == 0
    assert "| params | mine | 8 |" in capsys.readouterr().out
    import csv
    rows = list(csv.DictReader(open(tmp_path / "o" / "bench.csv")))
    # width sets the accuracy; depth breaks only ties of accuracy: tau-b of (params, acc) is known
    from scipy.stats import kendalltau
    from autoprox.spaces import get_space
    p = [get_space("pit").num_params(r["arch"], 100, 224) for r in recs]
    assert float(rows[0]["kendall"]) == pytest.approx(kendalltau(p, [r["mine_acc"] for r in recs]).statistic, abs=1e-4)


def test_bench_says_which_proxies_its_jcm_row_negated(tmp_path, capsys):
    """Accuracy falls with width: #params anti-correlates, so its JCM row is its negation's tau, with
    orientation -1 and "(negated)" in the summary, while the target's row keeps the raw sign."""
    import json
    recs = [{"arch": {"base_dim": 16 + 8 * (i % 4), "mlp_ratio": 4, "depth": [2, 6, 4 + 2 * (i // 4)],
                      "num_heads": [2, 4, 8]}, "mine_acc": float(3 - i % 4)} for i in range(8)]
    (tmp_path / "b.json").write_text(json.dumps(recs))
    assert main(["bench", "--space", "pit", "--bench", str(tmp_path / "b.json"), "--proxy", "params", "depth",
                 "--out", str(tmp_path / "o"), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    rows = {(r["proxy"], r["dataset"]): r for r in csv.DictReader(open(tmp_path / "o" / "bench.csv"))}
    raw = float(rows["params", "mine"]["kendall"])
    assert raw < 0 and float(rows["params", "JCM"]["kendall"]) == pytest.approx(-raw)
    assert rows["params", "JCM"]["orientation"] == "-1" and rows["params", "mine"]["orientation"] == ""
    assert "| params (negated) |" in out and "ranks these archs against their accuracy" in out


@pytest.mark.parametrize("argv,msg", [
    (["bench", "--space", "pit", "--proxy", "nope"], "unknown proxy 'nope'"),
    (["bench", "--space", "vit", "--proxy", "params"], "unknown search space 'vit'"),
    (["bench", "--space", "pit", "--proxy", "params", "--targets", "xx"], "unknown target 'xx'"),
])
def test_bench_errors(tmp_path, capsys, argv, msg):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert msg in capsys.readouterr().err


def test_bench_config_unknown_key(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("space: pit\nproxies: [params]\nbogus: 1\n")
    assert main(["bench", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path)]) == 2
    assert "unknown key(s) ['bogus']" in capsys.readouterr().err


def test_bench_arch_outside_space(tmp_path, capsys):
    (tmp_path / "b.json").write_text('[{"arch": {"base_dim": 17, "mlp_ratio": 4, "depth": [2,6,4], '
                                     '"num_heads": [2,4,8]}, "a_acc": 1.0}]')
    assert main(["bench", "--space", "pit", "--bench", str(tmp_path / "b.json"), "--proxy", "params",
                 "--out", str(tmp_path)]) == 2
    assert "record 0: base_dim=17 is outside the space" in capsys.readouterr().err


def test_stats_verb_caches(tmp_path, capsys):
    assert main(["stats", "--space", "pit", "--limit", "2", "--batch-size", "2", "--resolution", "32",
                 "--cache-dir", str(tmp_path)]) == 0
    assert "2 archs of pit cached" in capsys.readouterr().out
    assert len(list(tmp_path.rglob("*.apx"))) == 2


def test_stats_counts_whole_entries_and_dry_run_writes_nothing(tmp_path, capsys):
    argv = ["stats", "--space", "pit", "--batch-size", "2", "--resolution", "32", "--cache-dir", str(tmp_path)]
    assert main([*argv, "--limit", "2"]) == 0
    capsys.readouterr()
    assert main([*argv, "--limit", "3", "--dry-run"]) == 0
    assert capsys.readouterr().out == "statistics of 3 archs of pit: 2 cached, 1 to compute\n"
    entries = sorted(tmp_path.rglob("*.apx"))
    assert len(entries) == 2
    with entries[0].open("r+b") as f:  # cut short, as a full disk leaves it: no longer counted
        f.truncate(entries[0].stat().st_size - 10)
    assert main([*argv, "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "1 cached, 2 to compute" in out and "3 archs of pit cached" in out and "(2 computed" in out
    assert len(list(tmp_path.rglob("*.apx"))) == 3 and main([*argv, "--limit", "3", "--dry-run"]) == 0
    assert "3 cached, 0 to compute" in capsys.readouterr().out
    assert main([*argv, "--limit", "3", "--dry-run", "--address", "127.0.0.1:1"]) == 0  # counts, joins nothing
    assert capsys.readouterr().out == ("statistics of 3 archs of pit: 3 cached, 0 to compute (counted in this "
                                       "machine's cache; a cluster worker loads what its own holds)\n")


def test_stats_on_a_cluster_says_its_count_is_this_machines(tmp_path, capsys, monkeypatch):
    class Workers:  # a cluster's workers: they load or compute, and say nothing of which
        def warm(self, archs, fams):
            warmed.extend(archs)

        def close(self):
            pass
    warmed = []
    monkeypatch.setattr("autoprox.parallel.backends.make_backend", lambda *a, **k: Workers())
    assert main(["stats", "--space", "pit", "--limit", "3", "--batch-size", "2", "--resolution", "32",
                 "--cache-dir", str(tmp_path), "--backend", "ray", "--address", "127.0.0.1:1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert len(warmed) == 3 and "(3 not in this machine's cache: computed or loaded by the workers, " in last


@pytest.mark.ray
def test_stats_verb_on_ray_workers(tmp_path, capsys):
    assert main(["stats", "--space", "pit", "--limit", "3", "--batch-size", "2", "--resolution", "32",
                 "--cache-dir", str(tmp_path), "--backend", "ray", "--workers", "2"]) == 0
    assert "3 archs of pit cached" in capsys.readouterr().out
    assert len(list(tmp_path.rglob("*.apx"))) == 3
