"""The ``statesync`` command line: run nodes, launch a cluster, talk to a node.

``main(argv)`` is the console script; ``python -m statesync.cli`` runs it too.
:class:`statesync.cli.cluster.LocalCluster` starts node processes from Python
(examples and tests use it).
"""

from __future__ import annotations

from statesync.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
