"""The README's and the guide's commands and Python lines, as written: every ``autoprox`` command
parses and names what exists, every Python block compiles and uses the API that exists, and the cheap
ones run."""
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
PAGES = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
         for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
README = PAGES["README.md"]
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```", re.S | re.M)
PAGE_BLOCKS = {page: [(m["lang"], m["body"]) for m in FENCE.finditer(text)] for page, text in PAGES.items()}
BLOCKS = PAGE_BLOCKS["README.md"]
ALL_BLOCKS = [(page, lang, body) for page, blocks in PAGE_BLOCKS.items() for lang, body in blocks]


def _inline(text: str) -> list[str]:
    """Commands in the prose; synopses (``autoprox <verb>``, ``[--flag]``, ``a|b``, a bare verb) are not commands."""
    prose = FENCE.sub("", text)
    return [s for s in re.findall(r"`(autoprox [^`]+)`", prose) if not re.search(r"[<>\[\]|]", s) and len(s.split()) > 2]


INLINE = _inline(README)
ALL_INLINE = [(page, s) for page, text in PAGES.items() for s in _inline(text)]
# files a page names that autoprox does not ship: the OoD-ViT-NAS files, your own benchmark and teacher
USER_FILES = re.compile(r"(^|/)(1k_Vit_Architecture_from_AutoFM_\w+|tiny|small|base|my_\w+)\.json$|^teacher\.pt$")
DATA_FREE = {"params", "flops", "depth_width"}


def _commands(body: str) -> list[list[str]]:
    """Each ``autoprox`` command of a shell block, split as the shell would, comments dropped."""
    out = []
    for line in body.splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words[:1] == ["autoprox"] and words[1:] != ["--version"]:
                out.append(words[1:])
    return out


BLOCK_COMMANDS = [c for lang, body in BLOCKS if lang == "bash" for c in _commands(body)]
PAGE_COMMANDS = [(page, c) for page, lang, body in ALL_BLOCKS if lang == "bash" for c in _commands(body)]


def test_the_readme_and_every_guide_page_have_their_commands():
    assert len(BLOCK_COMMANDS) >= 6, "the README's set-up line and its tour"
    assert sum(1 for page, _ in PAGE_COMMANDS if page != "README.md") >= 30 and len(ALL_INLINE) >= 12
    pages = {page for page, _ in PAGE_COMMANDS}
    assert {"docs/zoo.md", "docs/discovery.md", "docs/search-and-build.md", "docs/scaling-out.md"} <= pages
    assert sum(lang == "python" for _, lang, _ in ALL_BLOCKS) >= 2
    for page in PAGES:  # every relative link of a page points at a file that exists
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", PAGES[page]):
            assert (ROOT / page).parent.joinpath(link).exists(), f"{page}: {link}"


@pytest.mark.parametrize("words", [c for _, c in PAGE_COMMANDS] + [shlex.split(s)[1:] for _, s in ALL_INLINE],
                         ids=lambda w: " ".join(w)[:60])
def test_every_command_parses(words):
    build_parser().parse_args(words)  # argparse exits (a test error) on an unknown verb or flag


def _declared_spaces(tmp: Path) -> dict[str, Path]:
    """The YAML space files a page declares in a ``yaml`` block (``name: tiny-narrow``), written to ``tmp``."""
    found = {}
    for _, lang, body in ALL_BLOCKS:
        m = re.search(r"^name: ([\w-]+)", body, re.M) if lang == "yaml" else None
        if m and "builder:" in body:
            found[m[1] + ".yaml"] = tmp / (m[1] + ".yaml")
            found[m[1] + ".yaml"].write_text(body, encoding="utf-8")
    return found


@pytest.mark.parametrize("page,words", PAGE_COMMANDS, ids=lambda w: w if isinstance(w, str) else " ".join(w)[:60])
def test_every_block_command_names_what_exists(page, words, tmp_path):
    """Spaces (shipped or declared on a page), zoo proxies, shipped configs and the files a command reads
    resolve; files an earlier command writes (``runs/...``, ``*.py``) and files the user supplies (an
    OoD-ViT-NAS file, a benchmark or teacher of their own) are left alone."""
    args = build_parser().parse_args(words)
    declared = _declared_spaces(tmp_path)
    if getattr(args, "space", None):
        get_space(str(declared.get(args.space, args.space)))
    proxies = args.proxy if isinstance(getattr(args, "proxy", None), list) else [getattr(args, "proxy", None)]
    for p in proxies:
        if p and not p.endswith((".yaml", ".py")):
            resolve(p)
    if getattr(args, "config", None):
        from autoprox.discovery.config import load_evolve_config
        load_evolve_config(ROOT / args.config)
    benches = getattr(args, "bench", None) or []
    for b in benches if isinstance(benches, list) else [benches]:
        f = b.split("=", 1)[-1]
        assert USER_FILES.search(f) or (ROOT / f).is_file(), f"{page}: {f} is neither shipped nor a user's file"
    if getattr(args, "teacher", None):
        assert USER_FILES.search(args.teacher)


def test_every_python_block_compiles_and_uses_the_api_that_exists():
    for page, lang, body in ALL_BLOCKS:
        if lang == "python":
            compile(body, page, "exec")
            for name in re.findall(r"autoprox\.(\w+)\(", body):
                assert callable(getattr(autoprox, name)), f"{page}: {name}"


def _cheap(words: list[str]) -> bool:
    """Seconds on a laptop: zoo, export of a zoo name, cache info, and data-free bench and search on shipped data."""
    verb = words[0]
    if verb == "zoo" or (verb == "cache" and words[1] == "info"):
        return True
    if verb == "export":
        return not words[1].endswith((".yaml", ".py"))
    if verb in ("bench", "search"):
        args = build_parser().parse_args(words)
        proxies = args.proxy if isinstance(args.proxy, list) else [args.proxy]
        return (set(proxies) <= DATA_FREE and not getattr(args, "bench", None) and args.backend == "serial"
                and not getattr(args, "batch_size", None))
    return False


CHEAP = [(page, c) for page, c in PAGE_COMMANDS if _cheap(c)]


def test_the_cheap_commands_of_every_page_run_as_written(tmp_path, monkeypatch, capsys):
    """Every cheap command of the guide and the README, in page order, in one folder; each ``build`` of a
    ``result.yaml`` an earlier command wrote runs too."""
    assert len(CHEAP) >= 8 and {p for p, _ in CHEAP} >= {"README.md", "docs/zoo.md", "docs/search-and-build.md"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPROX_CACHE", str(tmp_path / "cache"))
    ran, done = 0, []
    for page, c in PAGE_COMMANDS:
        if c in done:  # one command on two pages (the README's tour and its page) runs once
            continue
        done.append(c)
        if (page, c) in CHEAP or (c[0] == "build" and c[1].endswith("result.yaml") and (tmp_path / c[1]).is_file()):
            assert main(list(c)) == 0, f"{page}: autoprox {' '.join(c)}"
            ran += c[0] == "build"
    assert ran >= 1  # a build ran on a search's result


def test_the_readme_first_command_and_the_training_lines_run_as_written(tmp_path, monkeypatch, capsys):
    """The first command, a data-free search, building its found arch and a PiT arch, then the
    guide's training lines on the built model (two tiny batches as the loader)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPROX_CACHE", str(tmp_path / "cache"))
    first = BLOCK_COMMANDS[0]
    assert first[:2] == ["bench", "--space"] and main(first + ["--out", "b"]) == 0
    assert "| params | c100_kd | 100 |" in capsys.readouterr().out.replace("  ", " ")
    commands = [c for _, c in PAGE_COMMANDS]
    data_free = next(c for c in commands if c[0] == "search" and "params" in c and "--bench-only" not in c)
    assert main(data_free) == 0
    out = data_free[data_free.index("--out") + 1]
    build = next(c for c in commands if c[0] == "build" and c[1].endswith("result.yaml"))
    assert main(["build", f"{out}/result.yaml", *build[2:]]) == 0
    assert main(next(c for c in commands if c[0] == "build" and "--space" in c)) == 0
    assert (tmp_path / "model.py").is_file() and (tmp_path / "pit.pt").is_file()
    train = next(body for _, lang, body in ALL_BLOCKS if lang == "python" and "loader" in body)
    import torch
    loader = [(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(i)), torch.tensor([0, 1]))
              for i in range(2)]
    scope = {"loader": loader}
    sys.path.insert(0, str(tmp_path))
    try:
        exec(compile(train, "docs/search-and-build.md", "exec"), scope)
    finally:
        sys.path.remove(str(tmp_path))
    assert torch.isfinite(scope["loss"]) and scope["model"].training


def test_the_api_lines_run_as_written_up_to_the_long_ones(tmp_path, monkeypatch):
    """The Python API block on PiT models (the page's ``model``, ``arch``, ``models``, ``archs``);
    its last three lines (a bench, a search and an evolution over 100 archs at the default batch)
    take minutes: they must exist in the API, and the CLI tests run their verbs small."""
    monkeypatch.setenv("AUTOPROX_CACHE", str(tmp_path / "cache"))
    body = next(body for _, lang, body in ALL_BLOCKS if lang == "python" and "autoprox.score(" in body)
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
            values.append(eval(compile(code, "docs/python-api.md", "eval"), scope))
        except SyntaxError:
            exec(compile(code, "docs/python-api.md", "exec"), scope)
    import numpy as np
    assert "snip" in values[0] and scope["p"].name == "snip" and tuple(scope["images"].shape) == (32, 3, 224, 224)
    snip, dw, fused = values[1:]
    assert np.isfinite(snip) and snip > 0 and np.isfinite(dw) and len(fused) == 2 and np.all(np.isfinite(fused))


def _run_folders() -> list[tuple[str, str]]:
    """(folder, what writes it) for every run the README and the guide start: ``evolve`` and ``search``
    commands (block and prose; a ``--resume`` continues its run) and the API's ``evolve``/``search`` lines."""
    found = []
    cmds = [c for _, c in PAGE_COMMANDS] + [shlex.split(s)[1:] for _, s in ALL_INLINE]
    for c in cmds:
        if c[0] not in ("evolve", "search") or "--resume" in c or "--fold" in c:
            continue
        if "--out" in c:
            found.append((c[c.index("--out") + 1], " ".join(c)))
        elif c[0] == "evolve" and "--config" in c:
            found.append(("runs/" + Path(c[c.index("--config") + 1]).stem, " ".join(c)))
    for text in PAGES.values():
        for m in re.finditer(r"autoprox\.(evolve|search)\((.*)\)", text):
            out = re.search(r'out="([^"]+)"', m[2])
            cfg = re.match(r'"([^"]+\.yaml)"', m[2])
            found.append((out[1] if out else "runs/" + Path(cfg[1]).stem if cfg else "?", m[0]))
    return found


def test_no_two_runs_of_the_readme_and_the_guide_write_one_folder():
    """Run in order, a second run into a folder another run holds stops ("runs/s already holds a search
    run"): the API's search and the declared-space search once both wrote runs/s, and the API's evolve
    wrote runs/quick, the folder of the first evolve command."""
    seen: dict[str, str] = {}
    for folder, what in _run_folders():
        if folder.isupper():  # a placeholder of the prose (``--out D``), not a folder
            continue
        assert folder not in seen or seen[folder] == what, f"{folder}: {seen[folder]!r} and {what!r}"
        seen[folder] = what
    assert {"runs/quick", "runs/s", "runs/narrow", "runs/quick-api", "runs/s2"} <= set(seen)
