"""Background pipeline stages: order, error propagation, early exit, and the inline mode."""
from __future__ import annotations

import threading
import time

import pytest

from talkingface.background import BackgroundSink, prefetch


def _threads(name: str) -> int:
    return sum(thread.name == name and thread.is_alive() for thread in threading.enumerate())


@pytest.mark.parametrize("threaded", [True, False])
def test_prefetch_keeps_order_and_reads_ahead_only_depth_items(threaded):
    produced = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    seen = []
    for item in prefetch(items(), depth=3, threaded=threaded, name="t-order"):
        time.sleep(0.002)
        seen.append(item)
        assert len(produced) - len(seen) <= (3 + 1 if threaded else 0)  # the queue plus the one being put
    assert seen == list(range(50))


def test_prefetch_raises_the_producers_error_in_the_caller():
    def items():
        yield 1
        raise ValueError("bad frame 2 in clip.mp4")

    got = []
    with pytest.raises(ValueError, match="clip.mp4"):
        for item in prefetch(items(), name="t-error"):
            got.append(item)
    assert got == [1] and _threads("t-error") == 0


def test_prefetch_stops_and_closes_the_producer_when_the_caller_leaves_early():
    closed = threading.Event()

    def items():
        try:
            for i in range(10**6):
                yield i
        finally:
            closed.set()

    stream = prefetch(items(), depth=2, name="t-early")
    for item in stream:
        if item == 5:
            break
    stream.close()
    assert closed.wait(2) and _threads("t-early") == 0


@pytest.mark.parametrize("threaded", [True, False])
def test_sink_consumes_everything_in_order(threaded):
    consumed = []
    with BackgroundSink(consumed.append, depth=2, threaded=threaded, name="t-sink") as sink:
        for i in range(100):
            sink.put(i)
    assert consumed == list(range(100)) and _threads("t-sink") == 0


def test_sink_error_is_raised_in_the_caller_and_stops_it():
    def consume(item):
        if item == 3:
            raise OSError("disk full writing out.mp4")

    with pytest.raises(OSError, match="out.mp4"):
        with BackgroundSink(consume, depth=2, name="t-sink-error") as sink:
            for i in range(1000):
                sink.put(i)
    assert _threads("t-sink-error") == 0


def test_sink_left_with_an_error_drops_the_queue():
    consumed = []

    def slow(item):
        time.sleep(0.05)
        consumed.append(item)

    with pytest.raises(KeyError):
        with BackgroundSink(slow, depth=8, name="t-sink-abort") as sink:
            for i in range(8):
                sink.put(i)
            raise KeyError("caller failed")
    assert len(consumed) < 8 and _threads("t-sink-abort") == 0
