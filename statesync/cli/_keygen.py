"""``statesync keygen NAME``: make a CURVE key pair for a node or a client."""

from __future__ import annotations

import argparse
import sys

from statesync.cli._errors import EXIT_OK
from statesync.security import write_keypair


def run(args: argparse.Namespace) -> int:
    keys, public, secret = write_keypair(args.name, force=args.force)
    sys.stderr.write(
        f"statesync: wrote {secret} (the secret key, mode 0600: keep it on this host) and {public} "
        "(the public key, printed below: list it in the authorized_keys_file of the nodes it may use)\n"
    )
    sys.stdout.write(keys.public + "\n")
    sys.stdout.flush()
    return EXIT_OK
