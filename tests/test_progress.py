"""Progress while a plan runs: runs counted from the running chunks' journals and never twice,
the rate and the time left, the group in hand by what sets it apart, the bar as rich draws it
at 80 and 120 columns, and plain lines (pipes, cron logs) that nothing wraps.

Times come from a clock the test sets: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest
from fits_factory import write_apstars
from rich.console import Console
from typer.testing import CliRunner

from astra_cli import api
from astra_cli.cli.app import app
from astra_cli.cli.bar import BarView
from astra_cli.cli.progress import LineProgress, RichProgress, progress_line
from astra_cli.cli.tally import Snapshot, Tally
from astra_cli.engine.journal import ChunkJournal, JournalWatcher
from astra_cli.engine.planner import Group, Plan
from astra_cli.engine.worker import ChunkResult
from astra_cli.vocabulary import Observation, Outcome, Summary

GRID_A = "/very/long/directory/of/the/survey/models/grid-a.fits"
GRID_B = "/very/long/directory/of/the/survey/models/grid-b.fits"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outcome(key: str, ok: bool = True) -> Outcome:
    return Outcome(key, {"x": 1.0} if ok else None, None if ok else "bad", time.time(), 0.1)


def group(key: str, grid: str, order: int, runs: int) -> Group:
    observations = [Observation(f"{key}-{i}", f"/data/{key}-{i}.fits") for i in range(runs)]
    return Group(
        key=key,
        method="grid",
        options={"grid": grid, "continuum_order": order},
        significant={"grid": grid, "continuum_order": order},
        observations=observations,
        requested=runs,
    )


def two_grid_plan(runs: int = 50) -> Plan:
    groups = [group("aaaa", GRID_A, 4, runs), group("bbbb", GRID_B, 4, runs)]
    return Plan(method="grid", method_version="1", groups=groups, chunks=[], chunk_size=10)


def summary(ran: int, failed: int = 0) -> Summary:
    done = Summary(method="grid", output_dir="out")
    done.ran, done.failed = ran, failed
    return done


# --- journals of running chunks -------------------------------------------------------------


def test_the_watcher_counts_finished_runs_as_journals_grow(tmp_path):
    watcher = JournalWatcher(tmp_path)
    journal = ChunkJournal(str(tmp_path / "inv-0.jsonl"), "aaaa")
    journal.loading()
    journal.loaded()
    journal.started(["a", "b", "c"])
    assert {k: (c.group_key, c.finished) for k, c in watcher().items()} == {"inv-0": ("aaaa", 0)}

    journal.finished(outcome("a"))
    journal.finished(outcome("b", ok=False))
    assert watcher()["inv-0"].finished == 2

    with open(tmp_path / "inv-0.jsonl", "a") as torn:
        torn.write('{"finished":{"observation":"c"')  # a line still being written
    assert watcher()["inv-0"].finished == 2
    with open(tmp_path / "inv-0.jsonl", "a") as torn:
        torn.write("}}\n")
    assert watcher()["inv-0"].finished == 3
    assert watcher()["inv-0"].finished == 3  # read once, counted once
    journal.close()

    (tmp_path / "inv-0.jsonl").unlink()
    assert watcher() == {}


def test_a_retried_chunk_counts_its_runs_once(tmp_path):
    """dask runs a task again when its worker died, appending to the same journal: the
    watcher counts the new attempt from nothing, and recovery keeps each run once (its
    latest outcome), so neither the bar nor the summary counts a run twice."""
    from astra_cli.engine.journal import read_journal

    path = tmp_path / "inv-0.jsonl"
    watcher = JournalWatcher(tmp_path)
    for attempt in range(2):
        journal = ChunkJournal(str(path), "aaaa")  # a new worker: a new pid line
        journal.started(["a", "b", "c"])
        journal.finished(outcome("a"))
        journal.finished(outcome("b", ok=attempt == 1))
        journal.close()
        assert watcher()["inv-0"].finished == 2

    state = read_journal(path)
    assert [o.observation for o in state.finished] == ["a", "b"]
    assert state.finished[1].ok, "the latest attempt's outcome is kept"
    assert state.in_progress == ["c"]


def test_a_watcher_of_a_directory_gone_sees_nothing(tmp_path):
    assert JournalWatcher(tmp_path / "gone")() == {}


# --- the tally ------------------------------------------------------------------------------


def test_a_chunk_is_counted_from_its_journal_then_from_its_result_never_both(tmp_path):
    clock = Clock()
    tally = Tally(clock)
    tally.start(two_grid_plan())
    tally.watch(JournalWatcher(tmp_path))
    first = ChunkJournal(str(tmp_path / "inv-0.jsonl"), "aaaa")
    second = ChunkJournal(str(tmp_path / "inv-1.jsonl"), "aaaa")
    for key in "abc":
        first.finished(outcome(key))
    second.finished(outcome("d"))

    tally.read_journals()
    assert tally.snapshot().done == 4

    # The first chunk's 4 runs come back (one more than its journal had shown so far) while
    # its journal is still there: they count once, from the summary.
    tally.chunk_done(ChunkResult("inv-0", "aaaa", [outcome(k) for k in "abcz"]), summary(4))
    assert tally.snapshot().done == 4 + 1
    tally.read_journals()
    assert tally.snapshot().done == 4 + 1

    second.finished(outcome("e"))
    (tmp_path / "inv-0.jsonl").unlink()
    tally.read_journals()
    assert tally.snapshot().done == 4 + 2
    first.close()
    second.close()


def test_a_journal_removed_before_its_result_arrives_keeps_its_count(tmp_path):
    tally = Tally(Clock())
    tally.start(two_grid_plan())
    tally.watch(JournalWatcher(tmp_path))
    journal = ChunkJournal(str(tmp_path / "inv-0.jsonl"), "aaaa")
    journal.finished(outcome("a"))
    journal.finished(outcome("b"))
    journal.close()
    tally.read_journals()
    (tmp_path / "inv-0.jsonl").unlink()  # as the pool does just before handing the result on

    tally.read_journals()
    assert tally.snapshot().done == 2  # the bar does not step back
    tally.chunk_done(ChunkResult("inv-0", "aaaa", [outcome("a"), outcome("b")]), summary(2))
    assert tally.snapshot().done == 2


def test_rate_and_time_left_follow_the_clock():
    clock = Clock()
    tally = Tally(clock)
    tally.start(two_grid_plan(runs=50))
    assert tally.snapshot().rate is None and tally.snapshot().remaining is None

    clock.now += 10
    tally.chunk_done(ChunkResult("c0", "aaaa", [outcome(str(i)) for i in range(20)]), summary(20))
    snapshot = tally.snapshot()
    assert snapshot.elapsed == 10
    assert snapshot.rate == pytest.approx(2.0)
    assert snapshot.remaining == pytest.approx(40.0)  # 80 runs left at 2 a second

    # The rate is that of the last 30 s: a faster stretch shows.
    clock.now += 30
    tally.chunk_done(ChunkResult("c1", "aaaa", [outcome(str(i)) for i in range(60)]), summary(80))
    assert tally.snapshot().rate == pytest.approx(2.0)  # 60 runs in the last 30 s
    clock.now += 10
    assert tally.snapshot().rate == pytest.approx(60 / 30)
    assert tally.snapshot().remaining == pytest.approx(10.0)


def test_the_group_in_hand_is_named_by_what_sets_it_apart(tmp_path):
    tally = Tally(Clock())
    tally.start(two_grid_plan())
    assert tally.snapshot().group == "1/2 grid=…/grid-a.fits"
    tally.watch(JournalWatcher(tmp_path))
    ChunkJournal(str(tmp_path / "inv-5.jsonl"), "bbbb").close()

    tally.read_journals()
    assert tally.snapshot().group == "2/2 grid=…/grid-b.fits"

    ChunkJournal(str(tmp_path / "inv-4.jsonl"), "aaaa").close()
    tally.read_journals()
    assert tally.snapshot().group == "2/2 grid=…/grid-b.fits (+1 more)"


# --- the bar and the lines ------------------------------------------------------------------


def rendered(snapshot: Snapshot, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO(), force_terminal=True)
    console.print(BarView(snapshot))
    return console.export_text().rstrip("\n").split("\n")


SNAPSHOT = Snapshot("grid", done=40, total=100, failed=3, elapsed=12.0, rate=0.923,
                    group="2/4 grid=…/grid-b.fits continuum_order=3")  # fmt: skip


@pytest.mark.parametrize(("width", "rows"), [(80, 2), (120, 2), (160, 1)])
def test_the_bar_labels_its_times_and_shows_rate_and_group(width, rows):
    lines = rendered(SNAPSHOT, width)
    text = " ".join(lines)

    assert all(len(line) <= width for line in lines), lines
    assert "40/100" in text and "3 failed" in text
    assert "0.92 spectra/s" in text
    assert "elapsed 0:00:12" in text
    assert "left ~0:01:05" in text  # 60 runs at 0.923 a second
    assert "group 2/4 grid=…/grid-b.fits continuum_order=3" in text
    assert "━" in text  # a bar, with room for it
    assert len(lines) == rows
    assert ("elapsed" in lines[0]) == (width > 80)  # the times beside the bar where they fit


def test_the_bar_says_it_does_not_know_the_time_left_yet():
    lines = rendered(Snapshot("snr", 0, 10, 0, 3.0, None, "abcdef0123456789"), 80)

    assert "left ?" in " ".join(lines) and "? spectra/s" in " ".join(lines)


def test_plain_lines_say_count_rate_times_and_group_at_most_every_interval():
    clock = Clock()
    stream = io.StringIO()
    lines = LineProgress(stream, clock=clock, tick_seconds=None)
    lines.started(two_grid_plan(runs=50))
    clock.now += 5
    lines.chunk_done(ChunkResult("c0", "aaaa", [outcome("a")] * 10), summary(10, failed=1))
    assert len(stream.getvalue().splitlines()) == 1  # the plan only: too soon

    clock.now += 5
    lines.chunk_done(ChunkResult("c1", "bbbb", [outcome("b")] * 10), summary(20, failed=1))
    said = stream.getvalue().splitlines()[-1]
    assert said.endswith(
        "grid: 20/100 runs done, 1 failed, 2.0 spectra/s, elapsed 0:00:10, left ~0:00:40, "
        "group 2/2 grid=…/grid-b.fits"  # the group of the latest result, without journals
    )
    lines.tick()  # nothing new: nothing said
    assert len(stream.getvalue().splitlines()) == 2
    lines.finished(summary(20, failed=1))


def test_the_line_is_the_bar_in_words():
    assert progress_line(SNAPSHOT) == (
        "grid: 40/100 runs done, 3 failed, 0.92 spectra/s, elapsed 0:00:12, left ~0:01:05, "
        "group 2/4 grid=…/grid-b.fits continuum_order=3"
    )


def test_the_live_bar_starts_and_stops_with_the_plan():
    console = Console(width=80, file=io.StringIO(), force_terminal=True)
    bar = RichProgress(console, clock=Clock())
    bar.started(two_grid_plan())
    bar.chunk_done(ChunkResult("c0", "aaaa", [outcome("a")] * 5), summary(5))
    lines = rendered(bar.view().snapshot, 80)
    bar.finished(summary(5))

    assert "5/100" in lines[0]
    assert "grid: 100 runs to do in 2 group(s)" in console.file.getvalue()


# --- a real worker ------------------------------------------------------------------------------


def test_a_running_chunk_moves_the_count_and_its_result_does_not_add_to_it(with_plugin, tmp_path):
    """One chunk of four in a real worker process, held at its third run: the journal moves
    the count to 2 before any result came back; once it does, the count is 4, not 6."""
    paths = write_apstars(tmp_path / "data", 4)
    paths[2] = paths[2].rename(paths[2].with_name("apStar-test-0002-wait.fits"))
    gate = tmp_path / "gate"
    progress = LineProgress(io.StringIO(), tick_seconds=None)
    done: list[Summary] = []

    def run() -> None:
        done.append(api.run("counting", paths, output_dir=tmp_path / "out", jobs=1,
                            chunk_size=4, gate=str(gate), progress=progress))  # fmt: skip

    runner = threading.Thread(target=run)
    runner.start()
    try:
        deadline = time.monotonic() + 120
        while progress.tally.snapshot().done < 2 and time.monotonic() < deadline:
            progress.tally.read_journals()
            time.sleep(0.05)
        held = progress.tally.snapshot()
        assert held.done == 2, "the journal of the running chunk was not counted"
        assert held.group and not done  # the chunk is still running
    finally:
        gate.touch()
        runner.join()
    progress.tally.read_journals()

    assert done[0].ran == 4
    assert progress.tally.snapshot().done == 4


# --- on the command line: nothing wrapped ---------------------------------------------------


def test_nothing_is_wrapped_when_stderr_is_not_a_terminal(with_plugin, tmp_path):
    paths = write_apstars(tmp_path / "data" / ("a-directory-name-long-enough-to-wrap" * 2), 2)
    result = CliRunner().invoke(
        app,
        ["analyse", "counting", *map(str, paths), "--order", "5", "--order", "10",
         "--load-log", str(tmp_path / "a-long-file-name-for-the-load-log.txt"),
         "-o", str(tmp_path / "out"), "--jobs", "1"],
        env={"COLUMNS": "40"},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    summary_lines = [line for line in lines if line.startswith("counting: 4 requested")]
    assert len(summary_lines) == 1 and summary_lines[0].endswith("exit code 0")
    group_lines = [line for line in lines if "astra: group " in line]
    assert len(group_lines) == 2
    assert all(line.endswith("2 ok, 0 failed") and "order=" in line for line in group_lines)
    assert any(len(line) > 40 for line in lines)  # long lines, whole


def test_json_summary_is_unaffected_by_the_terminal(with_plugin, tmp_path):
    paths = write_apstars(tmp_path / "data", 2)
    result = CliRunner().invoke(
        app, ["analyse", "counting", *map(str, paths), "-o", str(tmp_path / "out"), "-j", "1",
              "--json"], env={"COLUMNS": "40"},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ran"] == 2


def test_journals_name_their_group(tmp_path):
    ChunkJournal(str(tmp_path / "c.jsonl"), "abc").close()

    first = json.loads(Path(tmp_path / "c.jsonl").read_text().splitlines()[0])
    assert first["group"] == "abc"


def test_the_layout_stays_put_while_the_numbers_grow():
    """The bar does not jump between one and two lines as counts and rate get wider."""
    start = Snapshot("grid", 0, 400, 0, 1.0, None, "1/4 grid=…/grid.fits continuum_order=3")
    later = Snapshot("grid", 170, 400, 12, 25.6, 7.0, start.group)

    for width in (80, 120):
        early, late = rendered(start, width), rendered(later, width)
        assert len(early) == len(late)
        assert early[0].index("━") == late[0].index("━")
        assert len(early[0].split(" ")[1]) == len(late[0].split(" ")[1])  # the bar's width


class Recorder:
    """A Progress that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def started(self, plan: Plan) -> None:
        pass

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        self.events.append(("chunk", result.group_key))

    def notice(self, text: str) -> None:
        self.events.append(("notice", text))

    def finished(self, summary: Summary) -> None:
        pass


def test_a_group_is_said_done_as_soon_as_its_last_run_is_in(with_plugin, tmp_path):
    """Two groups share the workers; the first group's line comes before the second group's
    last chunk, not after everything."""
    paths = write_apstars(tmp_path / "data", 3)
    recorder = Recorder()
    api.run(
        "counting", paths, output_dir=tmp_path / "out", backend="sequential", chunk_size=1,
        order=[5, 10], progress=recorder,
    )  # fmt: skip

    lines = [i for i, (kind, text) in enumerate(recorder.events) if kind == "notice"]
    chunks = [i for i, (kind, _) in enumerate(recorder.events) if kind == "chunk"]
    assert len(lines) == 2 and len(chunks) == 6
    assert lines[0] < chunks[-1], recorder.events
    said = [recorder.events[i][1] for i in lines]
    assert all(text.endswith("3 ok, 0 failed") for text in said), said
    assert "order=5" in said[0] and "order=10" in said[1], said


def test_a_rerun_names_its_groups_among_those_that_run(with_plugin, tmp_path):
    """After order=5 was done, a sweep of 5 and 10 runs one group: its line names it as the
    lone group it is (the bar does the same), not as group 2/2."""
    paths = write_apstars(tmp_path / "data", 2)
    out = tmp_path / "out"
    api.run("counting", paths, output_dir=out, backend="sequential", order=[5])
    recorder = Recorder()
    api.run(
        "counting", paths, output_dir=out, backend="sequential", order=[5, 10],
        progress=recorder,
    )  # fmt: skip
    lines = [text for kind, text in recorder.events if kind == "notice"]
    assert len(lines) == 1 and "/2" not in lines[0], lines
    assert lines[0].endswith("2 ok, 0 failed"), lines
