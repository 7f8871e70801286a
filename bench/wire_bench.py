"""Wire codec figures: encode+decode throughput and bytes per small put.

    .venv/bin/python bench/wire_bench.py            # figures
    .venv/bin/python bench/wire_bench.py --profile  # plus where the time goes

A *small put* is ``Op("node-a", seq, hlc, ("user", f"k{seq}"), 0, "v",
(("node-a", seq - 1),))`` with ``hlc`` a hybrid timestamp around
``1.8e12 << 16`` whose wall clock advances 1 ms every 25 writes (a node
writing 25,000 ops/s). Each figure is encode_frame plus decode_frame of one
frame, timed over many rounds; "best" is the fastest of the repeats and
"median" their median (the machine is shared: differences under ~20% are noise).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable

from statesync.core import Op, Ops
from statesync.wire import Compression, decode_frame, encode_frame

WALL_MS = 1_800_000_000_000
OPS_PER_MS = 25


def small_puts(count: int, first_seq: int = 1234) -> tuple[Op, ...]:
    ops = []
    for i in range(count):
        seq = first_seq + i
        hlc = ((WALL_MS + seq // OPS_PER_MS) << 16) | (seq % OPS_PER_MS)
        ops.append(Op("node-a", seq, hlc, ("user", f"k{seq}"), 0, "v", (("node-a", seq - 1),)))
    return tuple(ops)


def timed(fn: Callable[[], object], rounds: int, repeats: int) -> tuple[float, float]:
    """(best, median) seconds per call."""
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        samples.append((time.perf_counter() - t0) / rounds)
    return min(samples), statistics.median(samples)


def round_trip(ops_per_frame: int, compression: Compression | None) -> Callable[[], object]:
    msg = Ops(small_puts(ops_per_frame))

    def run() -> object:
        return decode_frame(encode_frame([msg], compression=compression))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.4, help="approximate time per repeat")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the 100-op case")
    args = parser.parse_args()

    zstd = Compression()
    forced = Compression(min_bytes=0, ratio_max=1.0e9)
    cases: list[tuple[str, int, Compression | None]] = [
        ("single-op frames, plain", 1, None),
        ("single-op frames, default zstd (below threshold: plain)", 1, zstd),
        ("single-op frames, zstd forced", 1, forced),
        ("100-op batches, plain", 100, None),
        ("100-op batches, zstd (default)", 100, zstd),
    ]
    print(f"python {sys.version.split()[0]}; encode_frame + decode_frame of one Ops message per frame")
    print(f"{'case':58s} {'best ops/s':>12s} {'median ops/s':>13s} {'us/frame':>9s}")
    for name, count, compression in cases:
        fn = round_trip(count, compression)
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-6)
        rounds = max(10, int(args.seconds / one / 3))
        best, median = timed(fn, rounds, args.repeats)
        print(f"{name:58s} {count / best:12,.0f} {count / median:13,.0f} {best * 1e6:9.1f}")

    print()
    print("bytes per small put (whole frame / ops in it)")
    one = Ops(small_puts(1))
    hundred = Ops(small_puts(100))
    rows = [
        ("single-op frame, plain", len(encode_frame([one], compression=None)), 1),
        ("single-op frame, zstd forced", len(encode_frame([one], compression=forced)), 1),
        ("100-op frame, plain", len(encode_frame([hundred], compression=None)), 100),
        ("100-op frame, zstd", len(encode_frame([hundred], compression=zstd)), 100),
        ("1000-op frame, plain", len(encode_frame([Ops(small_puts(1000))], compression=None)), 1000),
        ("1000-op frame, zstd", len(encode_frame([Ops(small_puts(1000))], compression=zstd)), 1000),
    ]
    for name, size, count in rows:
        print(f"{name:30s} {size:7d} B  {size / count:6.1f} B/op")

    if args.profile:
        fn = round_trip(100, None)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(2000):
            fn()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
        print(out.getvalue())


if __name__ == "__main__":
    main()
