#!/usr/bin/env bash
# Tasks/s that one worker completes for the real Python clients: a Rust
# qtasks worker (target/release/qtasks-py-worker) against the Python
# Celery worker and the Python QTasks worker, on the same `add(a, b)`
# tasks, side by side. For each protocol and worker: the real Python
# client fills the queue with N tasks (no worker running), the worker
# starts, and the clock (benches/python/bench.py) runs from its first take
# to its last result, then every result is checked. Rounds alternate the
# workers. Writes benches/python-interop.md and splices it into
# BENCHMARKS.md (between the python-interop markers); run-all.sh includes
# the file.
#
#   benches/python-interop.sh [N] [ROUNDS]      (default 5000 tasks, 3 rounds)
#
# Runs its own redis-server (port BENCH_PY_REDIS_PORT, default 6392, no
# persistence) and the virtualenv of scripts/python-env.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
rounds=${2:-3}
port=${BENCH_PY_REDIS_PORT:-6392}
url="redis://127.0.0.1:$port/0"
python=$(bash scripts/python-env)
cargo build --release -q -p qtasks-tests --bin qtasks-py-worker
rust_worker=target/release/qtasks-py-worker
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes \
  --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
# The Rust worker stops at the end of its stdin: give it a pipe that stays open.
mkfifo "$dir/stdin"
exec 3<>"$dir/stdin"

# run_one <protocol> <worker> <round>: prints the rate.
run_one() {
  local protocol=$1 worker=$2 round=$3 name="bench-$1-$2-$3" pid
  "$python" benches/python/bench.py "$protocol-fill" "$url" "$name" "$n"
  case "$protocol/$worker" in
    qtasks/rust) "$rust_worker" qtasks --app "$name" --url "$url" --concurrency 64 <"$dir/stdin" >/dev/null 2>>"$dir/workers.log" & ;;
    celery/rust) "$rust_worker" celery --app "$name" --url "$url" --queues "$name" --concurrency 64 <"$dir/stdin" >/dev/null 2>>"$dir/workers.log" & ;;
    qtasks/python) "$python" benches/python/qtasks_worker_app.py "$name" "$url" >/dev/null 2>>"$dir/workers.log" & ;;
    celery/python) QTASKS_REDIS_URL=$url "$python" -m celery --workdir tests/python -A celery_worker_app worker -Q "$name" \
      -c 2 --without-mingle --without-gossip --without-heartbeat -l warning >/dev/null 2>>"$dir/workers.log" & ;;
  esac
  pid=$!
  local rate
  rate=$("$python" benches/python/bench.py "$protocol-drain" "$url" "$name" "$n" | sed -n 's/^RATE //p')
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$rate"
}

declare -A rates
for round in $(seq 1 "$rounds"); do
  for protocol in celery qtasks; do
    for worker in rust python; do
      rate=$(run_one "$protocol" "$worker" "$round")
      echo "round $round: $protocol $worker worker: $rate tasks/s" >&2
      rates[$protocol/$worker]+="$rate "
    done
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

celery_rust=$(median <<<"${rates[celery/rust]}")
celery_py=$(median <<<"${rates[celery/python]}")
qtasks_rust=$(median <<<"${rates[qtasks/rust]}")
qtasks_py=$(median <<<"${rates[qtasks/python]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f×", a / b }'; }
{
  echo "## Python producers: a Rust worker against the Python workers"
  echo
  echo "Written by \`benches/python-interop.sh $n $rounds\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo "Tasks/s one worker completes for the real Python clients (qtasks 1.7.3,"
  echo "celery 5.7.0), $n \`add(i, i)\` tasks filled by the Python client"
  echo "before the worker starts, timed from the worker's first take to the last"
  echo "result (every result checked); median of $rounds rounds, workers alternating;"
  echo "a private redis-server on this machine. Rust: \`qtasks-py-worker\` (release,"
  echo "up to 64 tasks at once). Python Celery: prefork, 2 processes (the 2 cores)."
  echo "Python QTasks: \`app.run_forever()\` (its default 4 workers)."
  echo "A Rust drain of this many tasks lasts about a second or less, so the"
  echo "clock's 5 ms polling and other jobs on the shared machine move single"
  echo "rounds a lot: read the medians for their order of magnitude."
  echo
  echo "| protocol | Rust worker | Python worker | Rust / Python | rounds (Rust; Python) |"
  echo "| --- | ---: | ---: | ---: | --- |"
  echo "| Celery (kombu Redis) | $celery_rust | $celery_py | $(ratio "$celery_rust" "$celery_py") | ${rates[celery/rust]% }; ${rates[celery/python]% } |"
  echo "| QTasks (Redis) | $qtasks_rust | $qtasks_py | $(ratio "$qtasks_rust" "$qtasks_py") | ${rates[qtasks/rust]% }; ${rates[qtasks/python]% } |"
} >benches/python-interop.md
cat benches/python-interop.md

# Splice into BENCHMARKS.md, replacing an earlier copy.
report=BENCHMARKS.md
awk '/<!-- python-interop:begin -->/{skip=1} !skip{print} /<!-- python-interop:end -->/{skip=0}' "$report" >"$dir/report"
{
  cat "$dir/report"
  echo "<!-- python-interop:begin -->"
  cat benches/python-interop.md
  echo "<!-- python-interop:end -->"
} >"$report"
