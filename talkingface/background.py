"""Stages of a streaming pipeline in background threads: read ahead (``prefetch``) and write behind
(``BackgroundSink``), so that decoding, cropping, pasting and encoding overlap with a model in the
calling thread. Errors raised in a background thread are raised again in the calling thread; leaving
early (an error or a ``break`` in the caller) stops the thread.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
_ITEM, _END, _ERROR = "item", "end", "error"
_POLL_S = 0.1


def _put(channel: queue.Queue, stop: threading.Event, message: tuple[str, Any]) -> bool:
    """Put ``message`` unless ``stop`` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            channel.put(message, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int = 4, threaded: bool = True, name: str = "prefetch") -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead of the caller
    (``threaded=False``: in the caller's thread, as a plain loop)."""
    if not threaded:
        yield from items
        return
    channel: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
    stop = threading.Event()

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not _put(channel, stop, (_ITEM, item)):
                    return
            _put(channel, stop, (_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            _put(channel, stop, (_ERROR, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = channel.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


class BackgroundSink(Generic[T]):
    """Call ``consume(item)`` in a background thread for every ``put`` item, in order, at most ``depth``
    items behind. Use as a context manager: a clean exit waits for the last item and raises any error
    of ``consume``; an exit with an error stops the thread without consuming what is still queued.
    ``threaded=False`` calls ``consume`` in ``put`` itself."""

    def __init__(self, consume: Callable[[T], None], depth: int = 4, threaded: bool = True, name: str = "sink"):
        self._consume = consume
        self._threaded = threaded
        self._channel: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def _work(self) -> None:
        while True:
            try:
                kind, item = self._channel.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if kind == _END or self._stop.is_set():
                return
            try:
                self._consume(item)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                self._error = exc
                self._stop.set()
                return

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Queue ``item``; raises the error of an earlier ``consume`` call if there was one."""
        if not self._threaded:
            self._consume(item)
            return
        self._raise_error()
        if not _put(self._channel, self._stop, (_ITEM, item)):
            self._raise_error()
            raise RuntimeError("the background sink was stopped")

    def __enter__(self) -> "BackgroundSink[T]":
        if self._threaded:
            self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._threaded:
            return
        if exc_type is None:
            _put(self._channel, self._stop, (_END, None))
        else:
            self._stop.set()
        self._thread.join()
        if exc_type is None:
            self._raise_error()
