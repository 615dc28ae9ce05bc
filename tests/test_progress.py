"""The one progress display: periodic one-line reports when output is not a terminal."""
import io

import pytest

from autoprox.core.progress import Progress, track


@pytest.fixture
def now(monkeypatch):
    """The progress clock, set by the test (seconds)."""
    import autoprox.core.progress as P
    t = [100.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: t[0])
    return t


def test_log_lines_report_count_and_eta(now):
    out = io.StringIO()
    with Progress("statistics pit", 10, stream=out, every=30.0, tty=False) as prog:
        now[0] = 110.0
        prog.update(2)              # 10 s in: below the period, nothing printed
        assert out.getvalue() == ""
        now[0] = 140.0
        prog.update(4, note="x")    # 40 s in, 4 of 10; the later half's pace (2 in 30 s): 90 s to go
        now[0] = 150.0
        prog.update(5)              # 50 s in: within the period of the last line; 3 in 40 s: 67 s to go
    lines = out.getvalue().splitlines()
    assert lines == ["statistics pit: 4/10 in 0:00:40 eta 0:01:30  x", "statistics pit: 5/10 in 0:00:50 eta 0:01:06  x"]


def test_cached_units_at_the_start_do_not_shorten_the_eta(now):
    """164 archs read from the cache in 5 s, then one every 6 s: the ETA follows the 6 s."""
    now[0] = 0.0
    out = io.StringIO()
    with Progress("statistics autoformer-small", 684, stream=out, every=30.0, tty=False) as prog:
        for i in range(164):
            now[0] = 5.0 * (i + 1) / 164
            prog.update(i + 1)
        assert out.getvalue() == ""
        now[0] = 30.0
        prog.update(164)            # nothing computed yet, beyond the burst: no pace to promise
        for k in range(1, 31):      # 30 archs computed, 6 s each
            now[0] = 5.0 + 6.0 * k
            prog.update(164 + k)
    lines = out.getvalue().splitlines()
    assert lines[0] == "statistics autoformer-small: 164/684 in 0:00:30 eta ?"
    assert lines[-1] == "statistics autoformer-small: 194/684 in 0:03:05 eta 0:49:00"  # 490 x 6 s


def test_between_chunks_the_eta_counts_down(now):
    """A search scores 32 candidates every 120 s: the heartbeats between chunks count the ETA down
    (it climbed from 0:06:00 to 0:07:30 before each chunk landed, then fell back); overdue: '?'."""
    now[0] = 0.0
    out = io.StringIO()
    with Progress("search", 128, stream=out, every=30.0, tty=False) as prog:
        now[0] = 120.0
        prog.update(32)
        for t in (150.0, 180.0, 210.0):
            now[0] = t
            prog._report()          # the timer's heartbeat
        now[0] = 240.0
        prog.update(64)
        now[0] = 600.0              # the next chunk is overdue (the pace promised it by 480 s)
        prog._report()
    lines = out.getvalue().splitlines()
    assert [ln.split(" eta ")[1] for ln in lines[:5]] == ["0:06:00", "0:05:30", "0:05:00", "0:04:30", "0:04:00"]
    assert lines[5] == "search: 64/128 in 0:10:00 eta ?"


def test_the_final_line_is_not_printed_twice(now):
    now[0] = 0.0
    out = io.StringIO()
    with Progress("statistics pit", 1, stream=out, every=30.0, tty=False) as prog:
        now[0] = 58.0
        prog.update(1)              # the last arch ends after the period: its line is the final one
    assert out.getvalue().splitlines() == ["statistics pit: 1/1 in 0:00:58"]


def test_a_blocked_phase_still_reports():
    """The timer prints while nothing calls update (a Ray shard, one long arch)."""
    import time
    out = io.StringIO()
    with Progress("bench pit: statistics", 4, stream=out, every=0.2, tty=False):
        time.sleep(0.6)             # the timer wakes every min(every, 5) s
    assert out.getvalue().startswith("bench pit: statistics: 0/4 in 0:00:0")


def test_track_counts_every_item():
    out = io.StringIO()
    assert list(track(range(3), "t", 3, stream=out, tty=False)) == [0, 1, 2]
    assert out.getvalue().startswith("t: 3/3 in ")


def test_a_phase_that_never_reported_prints_no_final_line():
    out = io.StringIO()
    with Progress("evolve", 10, stream=out, tty=False):
        pass                        # e.g. a --cv gather whose runs had all finished
    assert out.getvalue() == ""
    with Progress("evolve", 10, stream=out, tty=False) as prog:
        prog.update(0, note="started")
    assert out.getvalue().startswith("evolve: 0/10 in ")


def test_only_the_inner_phase_reports_while_it_runs():
    """``evolve`` (steps) around its statistics phase: one heartbeat, the statistics', not two."""
    import time
    out = io.StringIO()
    with Progress("evolve", 3, stream=out, every=0.2, tty=False):
        with Progress("evolve: statistics of pit", 100, stream=out, every=0.2, tty=False):
            time.sleep(0.7)
        inner = out.getvalue().splitlines()
        time.sleep(0.5)             # the outer phase reports again once the inner one ended
    assert inner and all(ln.startswith("evolve: statistics of pit: 0/100") for ln in inner), inner
    assert out.getvalue().splitlines()[-1].startswith("evolve: 0/3 in ")
