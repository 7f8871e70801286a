"""The error base of the whole project and the errors the pure core raises.

Every error statesync raises on purpose derives from :class:`StatesyncError`,
so ``except statesync.StatesyncError`` catches them all. Other layers (wire,
ports, storage, node) subclass it in their own modules; ``statesync.errors``
gathers them in one public namespace.
"""

from __future__ import annotations


class StatesyncError(Exception):
    """Base class of every error statesync raises on purpose."""


class InvalidPath(StatesyncError, ValueError):
    """A path is malformed or exceeds a limit (depth, segment length)."""


class InvalidValue(StatesyncError, ValueError):
    """A value has a type statesync cannot store, or exceeds a size limit.

    ``type_name`` names the offending type and ``where`` says where in the value
    it sits (``"$"`` is the value itself, ``"$['a'][2]"`` a nested element).
    """

    def __init__(self, message: str, *, type_name: str = "", where: str = "$") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.where = where


class ClockSkewError(StatesyncError):
    """A peer's physical clock differs from ours by more than ``max_drift_s``."""

    def __init__(self, message: str, *, skew_s: float) -> None:
        super().__init__(message)
        self.skew_s = skew_s


class ResolverError(StatesyncError):
    """A custom conflict resolver failed or returned something it may not."""


class ResolverCheckFailed(StatesyncError):
    """``check_resolver`` found a counterexample; the message describes it."""

    def __init__(self, message: str, *, counterexample: object) -> None:
        super().__init__(message)
        self.counterexample = counterexample


class WriteConcernError(StatesyncError):
    """A write was durable locally but not acknowledged as its concern asked.

    The write itself stays: it is in the local log and spreads later.
    ``missing`` names the peers that did not acknowledge in time.
    """

    def __init__(self, message: str, *, missing: tuple[str, ...], dot: tuple[str, int]) -> None:
        super().__init__(message)
        self.missing = missing
        self.dot = dot


class InvalidArgument(StatesyncError, ValueError):
    """A call got an argument it does not take (an unknown write concern, an empty
    batch, an empty node id); the message names it and what is accepted."""
