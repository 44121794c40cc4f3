"""Hook handles shared by tensors and modules."""

import itertools

__all__ = ["RemovableHandle"]


class RemovableHandle:
    """Returned by every ``register_*hook``; ``.remove()`` unregisters the hook.

    Also a context manager, so a hook can live exactly as long as a ``with`` block.
    """

    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False
