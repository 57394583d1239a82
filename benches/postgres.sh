#!/usr/bin/env bash
# The Postgres benchmarks side by side in one run: qtasks's Postgres
# backend, apalis-postgres 1.0 and graphile_worker 0.14 (the Rust crate),
# each doing the same no-op work against the same server.
#
#   benches/postgres.sh            # the full run (1 M backlogs included)
#   QUICK=1 benches/postgres.sh    # small counts, a few minutes
#
# The server is $QTASKS_POSTGRES_URL (default: the `qtasks_bench` database
# on 127.0.0.1:5432, created if missing). Every run works in a schema or a
# queue of its own and removes it at the end. Raw results go to
# target/bench-postgres/results.txt: one `RESULT key=value … @@ command`
# line per measurement (failures as `RESULT bench=failed`). Not part of CI.
set -uo pipefail
cd "$(dirname "$0")/.."

out=target/bench-postgres
results=$out/results.txt
mkdir -p "$out"
: >"$results"
export QTASKS_POSTGRES_URL=${QTASKS_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/qtasks_bench}
if [[ $QTASKS_POSTGRES_URL == */qtasks_bench ]] &&
  ! psql "${QTASKS_POSTGRES_URL%/*}/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = 'qtasks_bench'" | grep -q 1; then
  psql "${QTASKS_POSTGRES_URL%/*}/postgres" -qc "CREATE DATABASE qtasks_bench" || exit 1
fi

if [[ -n ${QUICK:-} ]]; then
  single=500 bulk=20000 drain=20000 backlog=50000 window=10000 rt=200 size=50000
else
  single=2000 bulk=100000 drain=100000 backlog=1000000 window=100000 rt=1000 size=1000000
fi

say() { echo "postgres.sh: $*" >&2; }
bench() {
  say "$*"
  local got
  if got=$("$@" 2>"$out/stderr"); then
    grep '^RESULT' <<<"$got" | sed "s|\$| @@ $*|" >>"$results"
  else
    say "FAILED: $*"
    echo "RESULT bench=failed @@ $* :: $(tail -2 "$out/stderr" | paste -sd' ' -)" >>"$results"
  fi
}

cargo build --release -q -p qtasks-benches --bin e2e_postgres -p qtasks-peer-benches \
  --bin apalis_postgres --bin graphile_worker || exit 1
q=target/release/e2e_postgres a=target/release/apalis_postgres g=target/release/graphile_worker
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$out/load.txt"

for sys in "$q" "$a" "$g"; do
  bench "$sys" enqueue "$single" 1
  bench "$sys" enqueue "$single" 16
  bench "$sys" bulk "$bulk"
done
bench "$q" drain "$drain" 64
bench env BENCH_SYNCHRONOUS_FINISH=0 "$q" drain "$drain" 64
bench "$a" drain "$drain" 64 64
bench "$g" drain "$drain" 64 local
bench "$g" drain "$((drain / 20))" 64 direct
bench "$q" roundtrip "$rt" 16
bench env BENCH_SYNCHRONOUS_FINISH=0 "$q" roundtrip "$rt" 16
bench "$a" roundtrip "$((rt / 50))" 16
bench "$g" roundtrip "$rt" 16
bench "$q" drain "$backlog" 64 "$window"
bench env BENCH_SYNCHRONOUS_FINISH=0 "$q" drain "$backlog" 64 "$window"
bench "$a" drain "$backlog" 64 64 "$window"
bench "$g" drain "$backlog" 64 local "$window"
bench "$q" size "$size" 64

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
cat "$results"
