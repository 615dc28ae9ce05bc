"""Run checkpoints: one JSON state file per run folder, written atomically, the RNG state as
JSON, and clean-up of the temporaries a killed write leaves behind. Evolution and search
both checkpoint through here."""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

from autoprox.core.config import load_json_text
from autoprox.core.io import atomic_write_text, read_regular_text


def rng_to_json(rng: random.Random) -> list:
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]


def rng_from_json(s: list) -> random.Random:
    rng = random.Random()
    rng.setstate((s[0], tuple(s[1]), s[2]))
    return rng


def save_state(path: str | Path, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc))


def load_state(path: str | Path) -> dict[str, Any] | None:
    """The state in ``path``; None when there is none; ``ValueError`` naming the file when it
    cannot be read."""
    p = Path(path)
    if not os.path.lexists(p):  # (exists() says no for a link loop, which is refused below)
        return None
    try:
        text = read_regular_text(p, "checkpoint")  # a FIFO, device, socket or link loop: refused unopened
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot resume from {p}: {e}") from None
    doc = load_json_text(text, f"cannot resume from {p}", ValueError)
    if not isinstance(doc, dict):
        raise ValueError(f"cannot resume from {p}: not a checkpoint")
    return doc


_WRITER = re.compile(r"\.(\d+)-[^.]*\.tmp$")  # the writer's pid in a temporary's name (core.io.write_temp)


def _writer_alive(p: Path) -> bool:
    m = _WRITER.search(p.name)
    if m is None or int(m.group(1)) == os.getpid():  # no pid (an older write), or this process's own
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def clean_temporaries(folder: str | Path, pattern: str = ".*.tmp") -> int:
    """Remove the ``.*.tmp`` files that killed atomic writes leave (``pattern`` below ``folder``;
    default: directly in it), not those of a writer still running; their count."""
    f = Path(folder)
    n = 0
    for p in f.glob(pattern) if f.is_dir() else ():
        if _writer_alive(p):
            continue
        p.unlink(missing_ok=True)
        n += 1
    return n
