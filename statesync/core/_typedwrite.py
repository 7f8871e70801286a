"""A typed edit as a local write of the replicator: the one hook the node's typed API needs.

``Replicator.write`` carries out puts and removes; :func:`typed_write` does
the same for one typed edit (``Replica.text_insert`` and its kin, given as
``edit``): the edit runs first (raising InvalidOperation with nothing
applied), then its op is persisted, pushed to every up link and tracked for
its write concern exactly as a put's.
"""

from __future__ import annotations

from collections.abc import Callable

from statesync.core._op import Change, Op
from statesync.core._replica import Replica
from statesync.core._replication import AckSpec, Now, WriteTicket, check_ack
from statesync.core._replicator import Replicator

Edit = Callable[[Replica, int, "list[Change] | None"], Op]
"""``edit(replica, wall_ms, changes)``: one typed op of ``replica``, made and applied."""


def typed_write(rep: Replicator, edit: Edit, *, ack: AckSpec, timeout_s: float | None, now: Now) -> WriteTicket:
    """Run ``edit`` as a local write of ``rep`` with the write concern ``ack``."""
    check_ack(ack)
    changes = rep._out.changes if rep.record_changes else None
    op = edit(rep.replica, now.wall_ms, changes)
    return rep._issue([op], ack, timeout_s, now)


__all__ = ["Edit", "typed_write"]
