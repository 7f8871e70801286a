"""Keys and who may do what: key files, the authorized-keys file, grants.

- :func:`write_keypair` / :func:`load_secret_key_file` / :func:`load_public_key`:
  CURVE key pairs in ZeroMQ's certificate files (``NAME.key``, ``NAME.key_secret``).
- :class:`AuthorizedKeys`: a node's allowlist, one ``ROLE KEY [PREFIX...]``
  line per key (roles ``peer``, ``read``, ``write``), and the :class:`Grant`
  each line gives.

The transport side (CURVE on sockets, the ZAP handler) lives in
:mod:`statesync.ports`; the node applies these grants to peers and clients.
"""

from __future__ import annotations

from statesync.security._authorized import OWN_KEY_GRANT, ROLES, AuthorizedKeys, Grant, Role
from statesync.security._keys import (
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    KeyFileError,
    check_secret_file_mode,
    key_paths,
    load_public_key,
    load_secret_key_file,
    public_key_of,
    write_keypair,
)

__all__ = [
    "OWN_KEY_GRANT",
    "PUBLIC_SUFFIX",
    "ROLES",
    "SECRET_SUFFIX",
    "AuthorizedKeys",
    "Grant",
    "KeyFileError",
    "Role",
    "check_secret_file_mode",
    "key_paths",
    "load_public_key",
    "load_secret_key_file",
    "public_key_of",
    "write_keypair",
]
