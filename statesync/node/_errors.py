"""The error a node raises once it is closing (its own module so that every part of the node can raise it)."""

from __future__ import annotations

from statesync.core import StatesyncError


class NodeClosedError(StatesyncError):
    """The node is closing or closed; open a new one to keep working."""
