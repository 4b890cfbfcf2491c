#!/usr/bin/env bash
# Pool exec round trip (1 KiB, pipes, native echo worker) against a bare pipe ping-pong
# between two processes. Each round runs the criterion bench once, which measures the
# ping-pong first and the pool second (A B, A B, ...); prints every round, the medians and
# the median ratio. Usage: benches/relay-round-trip.sh [ROUNDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
cargo bench -p ringrunner-benches --bench pool --no-run >/dev/null 2>&1
to_us() { awk -v v="$1" -v u="$2" 'BEGIN { f = (u=="ns") ? 0.001 : (u=="ms") ? 1000 : (u=="s") ? 1000000 : 1; printf "%.2f", v*f }'; }
pings=(); pools=(); ratios=()
for round in $(seq "$rounds"); do
  out=$(cargo bench -p ringrunner-benches --bench pool 2>/dev/null)
  ping=$(echo "$out" | awk '/pipe_ping_pong/{getline; print $4, $5; exit}')
  pool=$(echo "$out" | awk '/pool_exec/{getline; print $4, $5; exit}')
  ping_us=$(to_us $ping); pool_us=$(to_us $pool)
  ratio=$(awk -v a="$pool_us" -v b="$ping_us" 'BEGIN { printf "%.2f", a/b }')
  echo "round $round: ping-pong ${ping_us} us, pool exec ${pool_us} us, ratio ${ratio}"
  pings+=("$ping_us"); pools+=("$pool_us"); ratios+=("$ratio")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END { print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2 }'; }
echo "median of $rounds rounds: ping-pong $(median "${pings[@]}") us, pool exec $(median "${pools[@]}") us, ratio $(median "${ratios[@]}") (target <= 1.5)"
