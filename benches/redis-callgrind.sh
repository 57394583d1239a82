#!/usr/bin/env bash
# Instructions the Redis server spends per task, counted by callgrind: a
# load-independent measure of the server's cost (wall-clock CPU time on a
# busy 2-core machine is not).
#
#   benches/redis-callgrind.sh [drain|live] [tasks] [concurrency] [binary]
#
# Starts a private redis-server (port 6393, no persistence) under
# callgrind with instrumentation off, runs `e2e_redis <mode> <tasks> 1
# <concurrency>` against it with `E2E_PHASE_HOOK` turning instrumentation on
# for the timed part only, then stops the server and prints one
# `RESULT bench=redis_server_instructions …` line with the instructions
# per task. `live` counts the enqueues too (they run during the timed
# part). Defaults: drain, 20000 tasks, concurrency 256,
# target/release/e2e_redis.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-drain}
tasks=${2:-20000}
concurrency=${3:-256}
bin=${4:-target/release/e2e_redis}
port=6393
out=$PWD/target/redis-callgrind
mkdir -p "$out"
rm -f "$out"/callgrind.out.*

command -v valgrind >/dev/null || { echo "redis-callgrind.sh: valgrind is not installed" >&2; exit 1; }
[[ -x $bin ]] || cargo build --release -q -p qtasks-benches --bin e2e_redis

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out.%p" \
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$out" \
  --logfile "$out/redis.log" ${REDIS_ARGS:-} 2>"$out/valgrind.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  redis-cli -p "$port" PING >/dev/null 2>&1 && break
  sleep 0.1
done

export QTASKS_BROKER_URL=redis://127.0.0.1:$port
export E2E_PHASE_HOOK="sh -c 'case \$0 in start) callgrind_control -i on $server ;; end) callgrind_control -i off $server ;; esac' >/dev/null"
line=$("$bin" "$mode" "$tasks" 1 "$concurrency" 2>"$out/e2e.log" | grep '^RESULT')
kill -TERM "$server"
wait "$server" 2>/dev/null || true
trap - EXIT

file=$(ls "$out"/callgrind.out.* | head -1)
# With instrumentation toggled, `summary:` reads 0: the `totals:` line counts.
ir=$(awk '/^(summary|totals):/ && $2 > t { t = $2 } END { print t + 0 }' "$file")
echo "RESULT bench=redis_server_instructions mode=$mode tasks=$tasks concurrency=$concurrency server_ir=$ir \
server_ir_per_task=$((ir / tasks)) e2e=[${line#RESULT }] @@ benches/redis-callgrind.sh $mode $tasks $concurrency"
