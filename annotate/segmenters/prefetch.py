"""Background encoder: computes the next images' embeddings before the user gets there.

One worker thread takes ``(key, loader)`` pairs from a queue and calls
``segmenter.set_image(loader(), key)`` for keys that are not cached yet.

Yielding to clicks (the choice): a SAM encode cannot be interrupted mid-forward, so encodes
run one at a time, and before each one the worker waits until no click is pending
(``segmenter.wait_for_clicks``). A click that arrives during an encode does not wait for it:
the segmenters encode under a lock of their own, outside the decoder's, so the two only
share the CPU. ``prefetch`` replaces the queue:
when the user moves on, stale work is dropped. Errors on one image (an unreadable file) are
recorded and skipped; they never stop the worker.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable

import numpy as np

from annotate.segmenters.base import Segmenter

Loader = Callable[[], np.ndarray]


class Prefetcher:
    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self._queue: queue.Queue[tuple[int, str, Loader] | None] = queue.Queue()
        self._generation = 0
        self._gen_lock = threading.Lock()
        self.encoded: list[str] = []
        self.errors: dict[str, str] = {}
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name=f"prefetch-{segmenter.name}", daemon=True)
        self._thread.start()

    def prefetch(self, keys_and_loaders: Iterable[tuple[str, Loader]]) -> None:
        """Encode these images next, in order, replacing any earlier queue."""
        with self._gen_lock:
            self._generation += 1
            gen = self._generation
        self._idle.clear()
        for key, loader in keys_and_loaders:
            self._queue.put((gen, key, loader))
        self._queue.put((gen, "", _noop))  # marks the end of this batch

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the current queue is done (tests and benches)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        with self._gen_lock:
            self._generation += 1
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._idle.set()
                return
            gen, key, loader = item
            with self._gen_lock:
                current = gen == self._generation
            if not key:
                if current:
                    self._idle.set()
                continue
            if not current or self.segmenter.is_ready(key):
                continue
            wait = getattr(self.segmenter, "wait_for_clicks", None)
            if wait is not None:
                wait()
            try:
                self.segmenter.set_image(loader(), key)
                self.encoded.append(key)
            # One bad image must not stop the worker: record it, go on.
            except Exception as err:  # noqa: BLE001
                self.errors[key] = f"{type(err).__name__}: {err}"


def _noop() -> np.ndarray:
    return np.zeros((1, 1, 3), np.uint8)
