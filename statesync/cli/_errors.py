"""CLI exit codes; the CLI's errors are defined in :mod:`statesync.errors`."""

from __future__ import annotations

from statesync.errors import CliError, NotFound, UsageError

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliError",
    "NotFound",
    "UsageError",
]

EXIT_OK = 0
"""Success."""
EXIT_FAILED = 1
"""The operation failed: the node refused it (bad path or value, write concern not met), or a launched node gave up."""
EXIT_USAGE = 2
"""Bad arguments or configuration (argparse also exits 2)."""
EXIT_UNREACHABLE = 3
"""No node answered at the endpoint."""
EXIT_NOT_FOUND = 4
"""``get`` / ``dump``: nothing at that path."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (``watch`` and ``node`` treat Ctrl-C as their normal end and exit 0)."""

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the operation failed (the node refused it: bad path or value, write
       concern not met; the demo failed; every launched node gave up)
  2    bad arguments or configuration
  3    no node answered at the endpoint (is it running? is --node right?)
  4    get/dump: there is no value at that path
  130  interrupted by Ctrl-C (except watch, node and launch, which stop
       cleanly on Ctrl-C and exit 0)
"""
