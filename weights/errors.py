"""The one exception every checkpoint reader and writer in ``weights`` raises.

A corrupt, truncated, malicious or mismatched checkpoint must never surface as a bare
``KeyError``, ``struct.error`` or ``MemoryError`` from deep inside a parser: callers (and the
``python -m weights`` CLI) catch :class:`CheckpointError` and show its message, which names
the file and the problem in words a user can act on.
"""


class CheckpointError(ValueError):
    """A checkpoint file could not be read, written or trusted; the message says why.

    Subclasses ``ValueError`` so code that already guards against bad input with
    ``except ValueError`` keeps working.
    """
