"""The README's commands and Python lines, as written: every ``autoprox`` command parses and names
what exists, every Python block compiles and uses the API that exists, and the cheap ones run."""
import re
import shlex
import sys
from pathlib import Path

import pytest

import autoprox
from autoprox.cli.main import build_parser, main
from autoprox.proxy.spec import resolve
from autoprox.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = [(m["lang"], m["body"]) for m in re.finditer(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```", README, re.S | re.M)]
# commands in the prose; synopses (``autoprox <verb>``, ``[--flag]``, ``a|b``, a bare verb) are not commands
INLINE = [s for s in re.findall(r"`(autoprox [^`]+)`", README) if not re.search(r"[<>\[\]|]", s) and len(s.split()) > 2]


def _commands(body: str) -> list[list[str]]:
    """Each ``autoprox`` command of a shell block, split as the shell would, comments dropped."""
    out = []
    for line in body.splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words[:1] == ["autoprox"]:
                out.append(words[1:])
    return out


BLOCK_COMMANDS = [c for lang, body in BLOCKS if lang == "bash" for c in _commands(body)]


def test_the_readme_has_its_commands_and_python():
    assert len(BLOCK_COMMANDS) >= 14 and len(INLINE) >= 12
    assert sum(lang == "python" for lang, _ in BLOCKS) >= 2


@pytest.mark.parametrize("words", BLOCK_COMMANDS + [shlex.split(s)[1:] for s in INLINE], ids=lambda w: " ".join(w)[:60])
def test_every_command_parses(words):
    build_parser().parse_args(words)  # argparse exits (a test error) on an unknown verb or flag


@pytest.mark.parametrize("words", BLOCK_COMMANDS, ids=lambda w: " ".join(w)[:60])
def test_every_block_command_names_what_exists(words):
    """Spaces, zoo proxies and shipped configs resolve; files an earlier command writes are left alone."""
    args = build_parser().parse_args(words)
    if getattr(args, "space", None):
        get_space(args.space)
    for p in (args.proxy if isinstance(getattr(args, "proxy", None), list) else [getattr(args, "proxy", None)]):
        if p and not p.endswith((".yaml", ".py")):
            resolve(p)
    if getattr(args, "config", None):
        from autoprox.discovery.config import load_evolve_config
        load_evolve_config(ROOT / args.config)


def test_every_python_block_compiles_and_uses_the_api_that_exists():
    for lang, body in BLOCKS:
        if lang == "python":
            compile(body, "README.md", "exec")
            for name in re.findall(r"autoprox\.(\w+)\(", body):
                assert callable(getattr(autoprox, name)), name


def test_the_cheap_commands_run_as_written(tmp_path, monkeypatch, capsys):
    """The first command, a data-free search, building its found arch and a PiT arch, then the
    README's training lines on the built model (two tiny batches as the loader)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPROX_CACHE", str(tmp_path / "cache"))
    first = BLOCK_COMMANDS[0]
    assert first[:2] == ["bench", "--space"] and main(first + ["--out", "b"]) == 0
    assert "| params | c100_kd | 100 |" in capsys.readouterr().out.replace("  ", " ")
    data_free = next(c for c in BLOCK_COMMANDS if c[0] == "search" and "params" in c and "--bench-only" not in c)
    assert main(data_free) == 0
    out = data_free[data_free.index("--out") + 1]
    build = next(c for c in BLOCK_COMMANDS if c[0] == "build" and c[1].endswith("result.yaml"))
    assert main(["build", f"{out}/result.yaml", *build[2:]]) == 0
    assert main(next(c for c in BLOCK_COMMANDS if c[0] == "build" and "--space" in c)) == 0
    assert (tmp_path / "model.py").is_file() and (tmp_path / "pit.pt").is_file()
    train = next(body for lang, body in BLOCKS if lang == "python" and "loader" in body)
    import torch
    loader = [(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(i)), torch.tensor([0, 1]))
              for i in range(2)]
    scope = {"loader": loader}
    sys.path.insert(0, str(tmp_path))
    try:
        exec(compile(train, "README.md", "exec"), scope)
    finally:
        sys.path.remove(str(tmp_path))
    assert torch.isfinite(scope["loss"]) and scope["model"].training


def test_the_api_lines_run_as_written_up_to_the_long_ones(tmp_path, monkeypatch):
    """The Python API block on PiT models (the README's ``model``, ``arch``, ``models``, ``archs``);
    its last three lines (a bench, a search and an evolution over 100 archs at the default batch)
    take minutes: they must exist in the API, and the CLI tests run their verbs small."""
    monkeypatch.setenv("AUTOPROX_CACHE", str(tmp_path / "cache"))
    body = next(body for lang, body in BLOCKS if lang == "python" and "autoprox.score(" in body)
    long = [ln for ln in body.splitlines() if re.search(r"autoprox\.(bench|search|evolve)\(", ln)]
    assert len(long) == 3
    sp = get_space("pit")
    archs = [{"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 2]},
             {"base_dim": 24, "mlp_ratio": 4, "depth": [2, 6, 4], "num_heads": [2, 4, 4]}]
    models = [sp.build(a, num_classes=100) for a in archs]
    scope = {"model": models[0], "arch": archs[0], "models": models, "archs": archs}
    values = []
    for ln in body.splitlines():
        code = ln.split("  #")[0].strip()
        if not code or ln in long:
            continue
        try:  # an expression's value is kept; a statement runs
            values.append(eval(compile(code, "README.md", "eval"), scope))
        except SyntaxError:
            exec(compile(code, "README.md", "exec"), scope)
    import numpy as np
    assert "snip" in values[0] and scope["p"].name == "snip" and tuple(scope["images"].shape) == (32, 3, 224, 224)
    snip, dw, fused = values[1:]
    assert np.isfinite(snip) and snip > 0 and np.isfinite(dw) and len(fused) == 2 and np.all(np.isfinite(fused))


def _run_folders() -> list[tuple[str, str]]:
    """(folder, what writes it) for every run the README starts: ``evolve`` and ``search`` commands
    (block and prose; a ``--resume`` continues its run) and the API's ``evolve``/``search`` lines."""
    found = []
    cmds = BLOCK_COMMANDS + [shlex.split(s)[1:] for s in INLINE]
    for c in cmds:
        if c[0] not in ("evolve", "search") or "--resume" in c or "--fold" in c:
            continue
        if "--out" in c:
            found.append((c[c.index("--out") + 1], " ".join(c)))
        elif c[0] == "evolve" and "--config" in c:
            found.append(("runs/" + Path(c[c.index("--config") + 1]).stem, " ".join(c)))
    for m in re.finditer(r"autoprox\.(evolve|search)\((.*)\)", README):
        out = re.search(r'out="([^"]+)"', m[2])
        cfg = re.match(r'"([^"]+\.yaml)"', m[2])
        found.append((out[1] if out else "runs/" + Path(cfg[1]).stem if cfg else "?", m[0]))
    return found


def test_no_two_readme_runs_write_one_folder():
    """Run in order, a second run into a folder another run holds stops ("runs/s already holds a search
    run"): the README's API search and its declared-space search both wrote runs/s, and the API's
    evolve wrote runs/quick, the folder of the README's first evolve command."""
    seen: dict[str, str] = {}
    for folder, what in _run_folders():
        if folder.isupper():  # a placeholder of the prose (``--out D``), not a folder
            continue
        assert folder not in seen or seen[folder] == what, f"{folder}: {seen[folder]!r} and {what!r}"
        seen[folder] = what
    assert {"runs/quick", "runs/s", "runs/narrow", "runs/quick-api"} <= set(seen)
