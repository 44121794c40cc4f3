"""A one-line progress display for long loops, written to stderr, and reported to whoever
listens on the thread (:func:`report_to`: the explorer's progress bars)."""

import contextlib
import sys
import threading
import time

_local = threading.local()


@contextlib.contextmanager
def report_to(callback):
    """Inside the block, every :class:`Progress` loop run by this thread also calls
    ``callback(description, count, total)`` before its first item and after each one."""
    previous = getattr(_local, "callback", None)
    _local.callback = callback
    try:
        yield
    finally:
        _local.callback = previous


class Progress:
    """``for step in Progress(range(n), "deepdream"): ...`` prints step, rate and extra values.

    ``set(loss=...)`` adds values to the line. Output goes to stderr only when it is a
    terminal or ``verbose=True``, so tests and pipes stay quiet. ``size(item)``: how many units
    (``unit``, e.g. images) each item stands for, when the rate and ``total`` count those.
    """

    def __init__(self, iterable, description, total=None, verbose=None, unit="", size=None):
        self.iterable = iterable
        self.description = description
        self.total = total if total is not None else getattr(iterable, "__len__", lambda: None)()
        self.verbose = sys.stderr.isatty() if verbose is None else verbose
        self.unit = f" {unit}" if unit else ""
        self.size = size
        self.values = {}

    def set(self, **values):
        self.values.update(values)

    def __iter__(self):
        start = last = time.perf_counter()
        count = 0
        listener = getattr(_local, "callback", None)
        if listener is not None:
            listener(self.description, 0, self.total)
        for item in self.iterable:
            yield item
            count += 1 if self.size is None else self.size(item)
            if listener is not None:
                listener(self.description, count, self.total)
            now = time.perf_counter()
            if self.verbose and (now - last > 0.2 or count == self.total):
                last = now
                shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.values.items())
                rate = count / (now - start)
                of = f"/{self.total}" if self.total else ""
                eta = f", {(self.total - count) / rate:.0f} s left" if self.total and count < self.total else ""
                sys.stderr.write(f"\r{self.description}: {count}{of}{self.unit} ({rate:.1f}{self.unit}/s{eta}) "
                                 f"{shown}\033[K")
                sys.stderr.flush()
        if self.verbose and count:
            sys.stderr.write("\n")
