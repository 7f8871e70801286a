"""The authorized-keys file: which public keys a node admits, and with which role.

One key per line::

    # ROLE   PUBLIC KEY (40 Z85 characters)             [PREFIX ...]     [# comment]
    peer     rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7                     # node b
    read     Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID                     # dashboards
    write    JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6   app.* config.*    # deploy bot
    write    e:Q}XvuyH]D1X^fU(N-zu>aJ@mAo=DJ)kdTWp*@W                     # operator: everything

- ``peer``: another node; it may join the mesh and replicate (so it may write
  anything, through replication). On the client endpoint it has full rights.
- ``read``: a client that may read, watch, dump and see the status.
- ``write``: a client that may also write and delete; with prefixes, only
  there. ``app.*`` is the path ``app`` and everything beneath it; ``*`` is
  everything (the same as no prefix). Paths use the CLI's text form
  (``a\\.b`` for a dot inside a segment).
- Blank lines and lines starting with ``#`` are ignored; on an entry line,
  a word starting with ``#`` starts a comment, which is also the key's label
  in the node's log lines (so a prefix cannot start with ``#``).

Every error says ``file:line`` and what is wrong, never the key text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path as FsPath
from typing import Final, Literal

import attrs
import zmq

from statesync.core import InvalidPath, Path, as_path, format_path
from statesync.ports import is_key_text
from statesync.security._keys import KeyFileError, _read_small

Role = Literal["peer", "read", "write"]
ROLES: Final = ("peer", "read", "write")
ENTRIES_MAX: Final = 10_000
PREFIXES_MAX: Final = 64
LABEL_CHARS_MAX: Final = 80


@attrs.frozen
class Grant:
    """What one key may do. ``prefixes`` limits a ``write`` key (empty: everywhere)."""

    role: Role
    prefixes: tuple[Path, ...] = ()
    label: str = ""
    line: int = 0

    @property
    def may_write(self) -> bool:
        return self.role in ("peer", "write")

    @property
    def unrestricted(self) -> bool:
        """A peer, or a write key without prefixes: may do everything a client can."""
        return self.role == "peer" or (self.role == "write" and not self.prefixes)

    def covers(self, path: Path) -> bool:
        """Whether ``path`` lies in this key's write scope (the path or beneath a prefix)."""
        if self.unrestricted:
            return True
        return any(path[: len(p)] == p for p in self.prefixes)

    def scope(self) -> str:
        """The write scope in the file's syntax (for error messages)."""
        if self.role == "read":
            return "nothing (read-only)"
        if self.unrestricted:
            return "everything"
        return " ".join(f"{format_path(p)}.*" for p in self.prefixes)

    def describe(self, key: str) -> str:
        """``key (label)`` for log lines."""
        return f"{key} ({self.label})" if self.label else key


OWN_KEY_GRANT: Final = Grant("peer", label="this node's own key")


class AuthorizedKeys:
    """A parsed authorized-keys file: public key -> :class:`Grant`."""

    def __init__(self, grants: dict[str, Grant], source: str) -> None:
        self.grants = grants
        self.source = source

    def __repr__(self) -> str:
        return f"<AuthorizedKeys {self.source}: {self.counts()}>"

    def __len__(self) -> int:
        return len(self.grants)

    def get(self, key: str) -> Grant | None:
        return self.grants.get(key)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(ROLES, 0)
        for grant in self.grants.values():
            out[grant.role] += 1
        return out

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, secrets: Iterable[str] = ()
    ) -> AuthorizedKeys:
        """Read and parse a file; ``secrets`` are secret keys that must not appear in it."""
        p = FsPath(path)
        return cls.parse(_read_small(p, "the authorized-keys file"), str(p), secrets=secrets)

    @classmethod
    def parse(cls, text: str, source: str = "authorized keys", *, secrets: Iterable[str] = ()) -> AuthorizedKeys:
        forbidden = set(secrets)
        grants: dict[str, Grant] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            where = f"{source}:{number}"
            words = raw.split()
            if not words or words[0].startswith("#"):
                continue
            label = ""
            for i, word in enumerate(words):
                if word.startswith("#") and i >= 2:
                    label = " ".join(words[i:]).lstrip("#").strip()[:LABEL_CHARS_MAX]
                    words = words[:i]
                    break
            role = words[0]
            if role not in ROLES:
                shown = role if len(role) <= 16 else role[:8] + "..."
                raise KeyFileError(
                    f"{where}: {shown!r} is not a role; a line is ROLE KEY [PREFIX...] with ROLE peer, read or write"
                )
            if len(words) < 2:
                raise KeyFileError(f"{where}: the {role} line has no key; a line is ROLE KEY [PREFIX...]")
            key = words[1]
            if key in forbidden:
                raise KeyFileError(
                    f"{where}: this is the node's SECRET key; list public keys only, and make a new "
                    "key pair (the secret one was exposed)"
                )
            if not is_key_text(key):
                raise KeyFileError(
                    f"{where}: the key is not a public key of 40 Z85 characters (as statesync keygen prints it)"
                )
            if key in grants:
                raise KeyFileError(
                    f"{where}: this key is listed again (first on line {grants[key].line}); one line per key"
                )
            prefixes = _prefixes(words[2:], role, where)
            if len(grants) >= ENTRIES_MAX:
                raise KeyFileError(f"{where}: more than {ENTRIES_MAX} keys; that is not a plausible authorized-keys file")
            grants[key] = Grant(role, prefixes, label, number)  # type: ignore[arg-type]
        for key, grant in grants.items():
            # a secret key pasted by mistake: its public key is listed too
            twin = grants.get(zmq.curve_public(key.encode("ascii")).decode("ascii"))
            if twin is not None:
                raise KeyFileError(
                    f"{source}:{grant.line}: this is the SECRET key of the key on line {twin.line}; "
                    "list public keys only, and make a new key pair (the secret one was exposed)"
                )
        return cls(grants, source)


def _prefixes(words: list[str], role: str, where: str) -> tuple[Path, ...]:
    if not words:
        return ()
    if role != "write":
        raise KeyFileError(f"{where}: only write keys take path prefixes ({role} keys apply to the whole tree)")
    if len(words) > PREFIXES_MAX:
        raise KeyFileError(f"{where}: more than {PREFIXES_MAX} prefixes on one line")
    out: list[Path] = []
    for word in words:
        if word == "*":
            return ()  # everything
        shown = word if len(word) <= 60 else word[:57] + "..."
        if not word.endswith(".*") or len(word) < 3:
            raise KeyFileError(
                f"{where}: prefix {shown!r} must be PATH.* (the path and everything beneath it) or *"
            )
        try:
            path = as_path(word[:-2])
        except InvalidPath as exc:
            raise KeyFileError(f"{where}: prefix {shown!r}: {exc}") from exc
        out.append(path)
    return tuple(out)
