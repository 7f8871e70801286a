"""A client process holding a lease: ``python tests/node/lease_holder.py ENDPOINT PREFIX N TTL_S``.

Grants a lease on the node at ENDPOINT, writes N keys under PREFIX with it,
prints ``ready`` and keeps the lease alive until it is killed (the tests and
bench/lease_bench.py SIGKILL it) or its stdin closes.
"""

from __future__ import annotations

import sys

from statesync.client import Client


def main() -> None:
    endpoint, prefix, n, ttl_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with Client(endpoint) as client:
        lease = client.lease(ttl_s=ttl_s)
        for i in range(n):
            client.set(f"{prefix}.k{i}", {"holder": i}, lease=lease)
        print("ready", lease.id, flush=True)
        sys.stdin.read()  # until the test closes stdin or kills this process


if __name__ == "__main__":
    main()
