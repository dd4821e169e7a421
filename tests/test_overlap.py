"""The one-process engine's overlap: ordered results, bounded work in flight, errors raised, threads ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgservice.engines.overlap import OrderedMap


def test_results_come_in_input_order_whatever_order_workers_finish() -> None:
    def slow_for_even(i: int) -> int:
        if i % 2 == 0:
            time.sleep(0.01)  # the even items finish after the odd ones started later
        return i * i

    with OrderedMap(slow_for_even, iter(range(20)), workers=3, depth=4) as done:
        got = list(done)
    assert got == [(i, i * i) for i in range(20)]


def test_items_in_flight_are_bounded() -> None:
    taken = 0
    returned = 0
    most = 0
    lock = threading.Lock()

    def items() -> Iterator[int]:
        nonlocal taken, most
        for i in range(50):
            with lock:
                taken += 1
                most = max(most, taken - returned)
            yield i

    with OrderedMap(lambda i: i, items(), workers=2, depth=2) as done:
        for _ in done:
            with lock:
                returned += 1
            time.sleep(0.002)  # a slow consumer (the encoder)
    # depth in the workers + workers waiting in the inbox + one being read
    assert most <= 2 + 2 + 1, most


def test_a_worker_error_reaches_the_caller_and_threads_end() -> None:
    def boom(i: int) -> int:
        if i == 3:
            raise ValueError("bad shard")
        return i

    before = threading.active_count()
    with (
        pytest.raises(ValueError, match="bad shard"),
        OrderedMap(boom, iter(range(100)), workers=2, depth=2) as done,
    ):
        for _ in done:
            pass
    assert threading.active_count() == before


def test_a_reader_error_reaches_the_caller_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("truncated")

    seen = []
    with (
        pytest.raises(OSError, match="truncated"),
        OrderedMap(lambda i: i, items(), workers=2, depth=2) as done,
    ):
        for item, _ in done:
            seen.append(item)
    assert seen in ([], [1], [1, 2])  # what was finished before the error may or may not be handed out


def test_leaving_early_stops_the_reader() -> None:
    produced = 0

    def endless() -> Iterator[int]:
        nonlocal produced
        i = 0
        while True:
            produced += 1
            yield i
            i += 1

    before = threading.active_count()
    with OrderedMap(lambda i: i, endless(), workers=2, depth=2) as done:
        for item, _ in done:
            if item == 5:
                break
    assert threading.active_count() == before
    assert produced < 20


def test_frame_times_are_demuxed_once_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgservice.media import timing
    from bgservice.media.ffmpeg import ClipSpec, synth_clip

    clip = synth_clip(str(tmp_path / "a.mp4"), ClipSpec(duration=1.0, rate="25"))
    calls = 0
    real = timing.read_frame_times

    def counting(path: str) -> timing.FrameTimes:
        nonlocal calls
        calls += 1
        return real(path)

    monkeypatch.setattr(timing, "read_frame_times", counting)
    first = timing.frame_times(clip)
    again = timing.frame_times(clip)
    assert calls == 1 and again is first and len(first) == 25
    assert not first.pts.flags.writeable
    synth_clip(clip, ClipSpec(duration=2.0, rate="25"))  # the file changes: demuxed again
    assert len(timing.frame_times(clip)) == 50 and calls == 2
