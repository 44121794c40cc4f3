"""A one-line progress display for long loops, written to stderr."""

import sys
import time


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
        for item in self.iterable:
            yield item
            count += 1 if self.size is None else self.size(item)
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
