"""A pass's values may change only with a version bump: its cache key holds the version, not
its code, so a silent change would serve stale cached values (see tests/golden.py)."""
import json

import pytest

from autoprox.stats.passes import get_pass, list_passes

from golden import GOLDEN, current

REGEN = "bump the pass's version in autoprox/stats/passes.py, then run: python tests/golden.py"


@pytest.fixture(scope="module")
def now():
    return current()


@pytest.mark.parametrize("name", list_passes())
def test_pass_values_match_their_version(name, now):
    golden = json.loads(GOLDEN.read_text())
    assert name in golden, f"no golden values for pass {name!r}: {REGEN}"
    g = golden[name]
    assert g["version"] == get_pass(name).version, (
        f"pass {name!r} is version {get_pass(name).version}, its golden values are of version {g['version']}: "
        f"run python tests/golden.py")
    for key, (count, total, mass) in g["values"].items():
        c, t, m = now[name]["values"][key]
        assert c == count, f"{name}: {key} has {c} values, golden {count}: {REGEN}"
        assert m == pytest.approx(mass, rel=1e-4) and t == pytest.approx(total, rel=1e-4, abs=1e-4 * mass), (
            f"{name}: the values of {key} changed under version {g['version']}: {REGEN}")
