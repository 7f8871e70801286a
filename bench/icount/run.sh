#!/usr/bin/env bash
# Instructions per message / per write, counted by valgrind's callgrind over
# both processes of a probe, for a source tree (a checkout of any commit).
# Instruction counts do not move with the machine's load the way wall time
# does, so two trees can be compared on a busy machine.
#
#   bench/icount/run.sh TREE ports oneway 2000 10000
#   bench/icount/run.sh TREE ports ping 300 1500
#   bench/icount/run.sh TREE ports request 300 1500
#   bench/icount/run.sh TREE node many 5000 25000
#   bench/icount/run.sh TREE node single 1000 5000
#
# Runs the probe at two sizes and prints (I(N2) - I(N1)) / (N2 - N1): start-up,
# imports and connection set-up cancel out. TREE's own statesync is imported
# (PYTHONPATH); the interpreter is this checkout's .venv. Needs valgrind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../../.venv/bin/python}
tree=$(cd "$1" && pwd); probe=$here/$2_probe.py; kind=$3; n1=$4; n2=$5
count() {
    local d; d=$(mktemp -d)
    (cd "$tree" && PYTHONPATH="$tree" valgrind --tool=callgrind --trace-children=yes \
        --callgrind-out-file="$d/cg.%p" "$py" "$probe" "$kind" "$1" >/dev/null 2>"$d/log")
    local total=0 v f
    for f in "$d"/cg.*; do v=$(grep -m1 '^summary:' "$f" | awk '{print $2}'); total=$((total + v)); done
    rm -rf "$d"
    echo "$total"
}
a=$(count "$n1"); b=$(count "$n2")
echo "$2 $kind $tree: $(( (b - a) / (n2 - n1) )) instructions each ($n1: $a, $n2: $b)"
