#!/usr/bin/env bash
# The whole benchmark suite in one command: builds in release, runs every
# benchmark of qtasks and of its peer (apalis 1.0) back to back on this
# machine, and writes BENCHMARKS.md at the workspace root, with a Targets
# table that judges each target (issue 16's and the earlier ones) on the
# numbers of this run.
#
#   benches/run-all.sh                # the full suite (about 20 minutes on 2 cores)
#   QUICK=1 benches/run-all.sh        # a smoke run with small counts (a few minutes)
#   REPORT_ONLY=1 benches/run-all.sh  # the report again from the last run's results
#
# The report is written from its top down to the heading `## Measured by
# hand`; everything from that heading to the end of the file is kept
# verbatim (sections measured and written by hand). The tail is taken from
# REPORT if it has that heading, else from BENCHMARKS.md.
#
# Redis: by default the script starts a private `redis-server` (port
# BENCH_REDIS_PORT, default 6390; no persistence) and stops it at the end,
# so the numbers are not disturbed by other users of a shared server (their
# keys, their tests killing connections with `CLIENT KILL`). Set
# QTASKS_BROKER_URL to use a server of your own instead. Redis rows are
# skipped, and the report says so, if no server answers.
#
# Environment: REPS (rounds of the in-memory runs, default 3), CT_REPS
# (builds per compile-time measurement, default 3),
# REPORT (the report, default BENCHMARKS.md). Raw results go to
# target/bench-suite/results.txt: one `RESULT key=value … @@ command` line
# per measurement; error output to target/bench-suite/log.txt.
#
# Every row of the report names the command that produced it (binaries in
# target/release).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=${QUICK:-}
reps=${REPS:-3}
report=${REPORT:-BENCHMARKS.md}
suite=target/bench-suite
results=$suite/results.txt
log=$suite/log.txt
mkdir -p "$suite"

if [[ -n $quick ]]; then
  mem_tasks=100000 cg_low=5000 cg_high=10000 redis_tasks=20000 redis_backlog=50000 redis_window=10000
  apalis_redis_tasks=5000 rt_count=300 reps=1 mem_window=10000
else
  mem_tasks=1000000 cg_low=20000 cg_high=60000 redis_tasks=100000 redis_backlog=1000000 redis_window=100000
  apalis_redis_tasks=100000 rt_count=2000 mem_window=100000
fi

say() { echo "run-all: $*" >&2; }
started=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# bench <tags> [VAR=value…] <command…>: runs a benchmark binary (with the
# given environment); appends its RESULT lines, with the tags and the
# command, to $results. A failure is recorded as a `RESULT bench=failed`
# line and the suite goes on.
bench() {
  local tags=$1
  shift
  say "$*"
  local out
  if out=$(env "$@" 2>"$suite/stderr"); then
    grep '^RESULT' <<<"$out" | sed "s|^RESULT |RESULT $tags |; s|\$| @@ $*|" >>"$results"
  else
    say "FAILED: $*"
    echo "RESULT bench=failed $tags @@ $*" >>"$results"
    printf '%s\t%s\n' "$*" "$(grep -v '^\s*$' "$suite/stderr" | tail -2 | paste -sd' ' -)" >>"$suite/failures.txt"
  fi
  cat "$suite/stderr" >>"$log"
}

# sel <key=value…>: the result lines having every given pair.
sel() {
  awk -v want="$*" 'BEGIN { n = split(want, w, " ") }
    /^RESULT/ { split($0, parts, " @@ "); line = " " parts[1] " "; ok = 1
      for (i = 1; i <= n; i++) if (index(line, " " w[i] " ") == 0) ok = 0
      if (ok) print }' "$results"
}
# get <key>: the values of key in the lines on stdin, one per line.
get() { awk -v k="$1" '{ split($0, parts, " @@ "); m = split(parts[1], f, " ")
  for (i = 1; i <= m; i++) if (index(f[i], k "=") == 1) print substr(f[i], length(k) + 2) }'; }
# cmd: the command of the first line on stdin.
cmd() { head -1 | awk -F' @@ ' '{ print $2 }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
minmax() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%s %s\n", lo, hi }' | { read -r lo hi && echo "$(n "$lo") – $(n "$hi")"; }; }
# n <number>: thousands separators ("1234567" → "1,234,567"), "–" if empty.
n() { if [[ -z ${1:-} ]]; then echo "–"; else LC_ALL=C awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }; print s o }'; fi; }
# calc <awk expression>
calc() { awk "BEGIN { printf \"%s\", $* }" 2>/dev/null; }
# pct <new> <base>: (new / base − 1) in percent, signed.
pct() { [[ -n ${1:-} && -n ${2:-} ]] && calc "sprintf(\"%+.1f %%\", ($1 / $2 - 1) * 100)" || echo "–"; }
# ratio <a> <b>: a / b.
ratio() { [[ -n ${1:-} && -n ${2:-} ]] && calc "sprintf(\"%.2f×\", $1 / $2)" || echo "–"; }

# REPORT_ONLY=1 writes the report again from the last run's results.
if [[ -z ${REPORT_ONLY:-} ]]; then
: >"$results"
: >"$log"
: >"$suite/failures.txt"

# ---------------------------------------------------------------------------
say "building (release)"
if ! cargo build --release -p qtasks-benches -p qtasks-peer-benches --bins >>"$log" 2>&1; then
  say "the build failed; see $log"
  exit 1
fi
bin=target/release

redis_where="the server at \`${QTASKS_BROKER_URL:-}\`"
private_redis=""
if [[ -z ${QTASKS_BROKER_URL:-} ]] && command -v redis-server >/dev/null; then
  port=${BENCH_REDIS_PORT:-6390}
  say "starting a private redis-server on port $port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$root/$suite" \
    --logfile "$root/$suite/redis.log" &
  private_redis=$!
  trap 'kill "$private_redis" 2>/dev/null; wait "$private_redis" 2>/dev/null' EXIT
  export QTASKS_BROKER_URL=redis://127.0.0.1:$port
  redis_where="a private \`redis-server\` started by the script (\`$QTASKS_BROKER_URL\`, no persistence)"
  for _ in $(seq 50); do
    redis-cli -u "$QTASKS_BROKER_URL" PING >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
export QTASKS_BROKER_URL=${QTASKS_BROKER_URL:-redis://127.0.0.1:6379}
redis_ok=""
if [[ $(redis-cli -u "$QTASKS_BROKER_URL" PING 2>/dev/null) == PONG ]]; then redis_ok=1; fi
redis_version=$( (redis-cli -u "$QTASKS_BROKER_URL" INFO server 2>/dev/null || true) | awk -F: '/^redis_version/ { sub("\r", "", $2); print $2 }')

# ---------------------------------------------------------------------------
# 1. Dispatch: instructions per trigger (callgrind) and ns per trigger (criterion).
say "dispatch: callgrind"
dispatch_table=$(OUT=target/callgrind bash benches/callgrind.sh 2>>"$log") || dispatch_table="(benches/callgrind.sh failed; see $log)"
criterion_table=""
if [[ -z $quick ]]; then
  say "dispatch: criterion"
  if cargo bench -p qtasks-benches --bench dispatch -- --noplot >>"$log" 2>&1; then
    criterion_table="| scenario | ns/trigger (median) | 95 % interval |"$'\n'"| --- | ---: | --- |"
    for s in $("$bin/dispatch" --list); do
      f=target/criterion/dispatch/$s/new/estimates.json
      [[ -f $f ]] || continue
      row=$(jq -r '.median | [.point_estimate, .confidence_interval.lower_bound, .confidence_interval.upper_bound] | map(. * 1000 | round / 1000) | "\(.[0]) | \(.[1]) – \(.[2])"' "$f")
      criterion_table+=$'\n'"| \`$s\` | $row |"
    done
  else
    criterion_table="(cargo bench failed; see $log)"
  fi
fi

# ---------------------------------------------------------------------------
# 2. In memory: tasks/s, side by side, in rounds (the order rotates per round).
# qtasks runs are tagged `mode=spawn` (a tokio task per run, the default)
# or `mode=inline` (`E2E_INLINE=1`: the worker polls its runs inside its own
# task, `WorkerBuilder::run_inline`); the binary's line does not say which.
configs=(
  "qtasks none 1" "qtasks-inline none 1" "qtasks noop56 1" "qtasks count56 1" "apalis inline 1"
  "qtasks none 64" "qtasks-inline none 64" "qtasks noop56 64" "qtasks count56 64" "apalis inline 64"
  "apalis spawn 64"
)
for r in $(seq 1 "$reps"); do
  k=${#configs[@]}
  for i in $(seq 0 $((k - 1))); do
    read -r sys what c <<<"${configs[$(((i + r - 1) % k))]}"
    case $sys in
      qtasks) bench "round=$r mode=spawn" "$bin/e2e_memory" throughput "$mem_tasks" "$c" "$what" ;;
      qtasks-inline) bench "round=$r mode=inline" E2E_INLINE=1 "$bin/e2e_memory" throughput "$mem_tasks" "$c" "$what" ;;
      apalis) bench "round=$r" "$bin/apalis_memory" throughput "$mem_tasks" "$c" "$what" ;;
    esac
  done
done

# Instructions per task (callgrind, whole process): (Ir(high) − Ir(low)) / (high − low).
cg() { # cg <name> [VAR=value…] <command with @N@>: records Ir per unit of N
  local name=$1 lo hi envs=()
  shift
  while [[ ${1:-} == [A-Z]*=* ]]; do envs+=("$1"); shift; done
  local cmd_lo=("${@//@N@/$cg_low}") cmd_hi=("${@//@N@/$cg_high}")
  say "callgrind: ${envs[*]} ${cmd_hi[*]}"
  lo=$(env "${envs[@]}" E2E_CURRENT_THREAD=1 E2E_SKIP_CHECK=1 valgrind --tool=callgrind --callgrind-out-file="$suite/$name.lo.out" "${cmd_lo[@]}" 2>&1 >/dev/null | awk '/Collected :/ { print $NF }')
  hi=$(env "${envs[@]}" E2E_CURRENT_THREAD=1 E2E_SKIP_CHECK=1 valgrind --tool=callgrind --callgrind-out-file="$suite/$name.hi.out" "${cmd_hi[@]}" 2>&1 >/dev/null | awk '/Collected :/ { print $NF }')
  if [[ -n $lo && -n $hi ]]; then
    echo "RESULT bench=instructions name=$name low=$cg_low high=$cg_high ir_low=$lo ir_high=$hi per_task=$(calc "($hi - $lo) / ($cg_high - $cg_low)") @@ ${envs[*]:+${envs[*]} }E2E_CURRENT_THREAD=1 E2E_SKIP_CHECK=1 valgrind --tool=callgrind ${cmd_hi[*]}" >>"$results"
  fi
}
# cg_split <name>: where the instructions per task of a `cg` run go. Each
# function's exclusive count in the high run less that in the low run
# (`callgrind_annotate --threshold=100`), over the difference in tasks,
# summed by group; one `RESULT bench=instructions_split` line.
cg_split() {
  local name=$1 lo=$suite/$1.lo.out hi=$suite/$1.hi.out
  [[ -f $lo && -f $hi ]] || return 0
  callgrind_annotate --threshold=100 --auto=no --show-percs=no "$lo" >"$suite/$name.lo.txt" 2>>"$log" || return 0
  callgrind_annotate --threshold=100 --auto=no --show-percs=no "$hi" >"$suite/$name.hi.txt" 2>>"$log" || return 0
  python3 - "$suite/$name.lo.txt" "$suite/$name.hi.txt" $((cg_high - cg_low)) "$name" >>"$results" <<'PY'
import re, sys
def load(path):  # "file:function" (the object left out) → exclusive Ir
    fns = {}
    for line in open(path, errors="replace"):
        m = re.match(r"^\s*([\d,]+)\s+(\S.*?)\s*$", line)
        if m and ":" in m.group(2):
            key = re.sub(r" \[[^]]*\]$", "", m.group(2))
            fns[key] = fns.get(key, 0) + int(m.group(1).replace(",", ""))
    return fns
def group(key):
    file, f = key.split(":", 1)
    if re.match(r"_*mem(cpy|move)", f):
        return "memcpy"
    if "/malloc/" in file or re.match(r"__(rust|rdl|rg)_(alloc|dealloc|realloc|alloc_zeroed)", f):
        return "malloc"
    f = re.sub(r"^(core::ptr::drop_in_place<|<|core::option::Option<|alloc::boxed::Box<|alloc::sync::Arc<)+", "", f)
    for prefix, g in (("qtasks::backend::memory", "backend"), ("qtasks::runtime", "runtime"),
                      ("qtasks::client", "client"), ("qtasks::app", "client"), ("tokio::", "tokio")):
        if f.startswith(prefix):
            return g
    return "rest"
lo, hi = load(sys.argv[1]), load(sys.argv[2])
n = int(sys.argv[3])
sums = dict.fromkeys(["memcpy", "malloc", "backend", "runtime", "client", "tokio", "rest"], 0)
for k in set(lo) | set(hi):
    sums[group(k)] += hi.get(k, 0) - lo.get(k, 0)
total = sum(sums.values())
print("RESULT bench=instructions_split name=%s %s total=%.0f @@ callgrind_annotate --threshold=100 on %s.lo.out and %s.hi.out"
      % (sys.argv[4], " ".join("%s=%.0f" % (g, v / n) for g, v in sums.items()), total / n, sys.argv[4], sys.argv[4]))
PY
}
if command -v valgrind >/dev/null; then
  for c in 1 64; do
    for p in none noop56 count56; do cg "qtasks_${p}_$c" "$bin/e2e_memory" throughput @N@ "$c" "$p"; done
    cg "qtasks_inline_none_$c" E2E_INLINE=1 "$bin/e2e_memory" throughput @N@ "$c" none
    cg "apalis_inline_$c" "$bin/apalis_memory" throughput @N@ "$c" inline
  done
  cg qtasks_enqueue "$bin/e2e_memory" memory @N@
  cg apalis_enqueue "$bin/apalis_memory" memory @N@
  cg_split qtasks_inline_none_64
fi

# Peak memory and enqueue rate with every task queued, no worker: in
# rounds, the order alternating.
for r in $(seq 1 "$reps"); do
  if ((r % 2)); then order="e2e_memory apalis_memory"; else order="apalis_memory e2e_memory"; fi
  for b in $order; do bench "round=$r" "$bin/$b" memory "$mem_tasks"; done
done
for r in $(seq 1 "$reps"); do
  bench "round=$r" "$bin/e2e_memory" backlog "$mem_tasks" "$mem_window" 64
done

# ---------------------------------------------------------------------------
# 3. Redis: qtasks, then apalis, back to back.
if [[ -n $redis_ok ]]; then
  bench "" "$bin/e2e_redis" enqueue "$redis_tasks" 1
  bench "" "$bin/apalis_redis" enqueue "$redis_tasks" 1
  bench "" "$bin/e2e_redis" enqueue "$redis_tasks" 64
  bench "" "$bin/apalis_redis" enqueue "$redis_tasks" 64
  for p in 1 2; do
    bench "" "$bin/e2e_redis" drain "$redis_tasks" "$p" 256
    bench "" "$bin/e2e_redis" drain "$redis_tasks" "$p" 64
    bench "" "$bin/apalis_redis" drain "$apalis_redis_tasks" "$p" 256 100 inline $((apalis_redis_tasks / 10))
    # apalis-redis live runs are bimodal (see the report): two runs each.
    for r in 1 2; do
      bench "round=$r" "$bin/e2e_redis" live "$redis_tasks" "$p" 256
      bench "round=$r" "$bin/apalis_redis" live "$apalis_redis_tasks" "$p" 256 100 inline
    done
  done
  bench "" "$bin/e2e_redis" roundtrip "$rt_count" 64
  bench "" "$bin/e2e_redis" drain "$redis_backlog" 1 256 "$redis_window"
fi
# Instructions the Redis server executes per task (its own private server
# under callgrind, port 6393; the script prints its RESULT line with its command).
if command -v valgrind >/dev/null && command -v redis-server >/dev/null; then
  if [[ -n $quick ]]; then rcg_tasks=2000; else rcg_tasks=20000; fi
  say "benches/redis-callgrind.sh drain $rcg_tasks 256"
  if out=$(bash benches/redis-callgrind.sh drain "$rcg_tasks" 256 2>>"$log"); then
    grep '^RESULT' <<<"$out" >>"$results"
  else
    echo "RESULT bench=failed name=redis_callgrind @@ benches/redis-callgrind.sh drain $rcg_tasks 256" >>"$results"
    printf '%s\t%s\n' "benches/redis-callgrind.sh drain $rcg_tasks 256" "see $log" >>"$suite/failures.txt"
  fi
fi

# ---------------------------------------------------------------------------
# 4. Compile time.
say "compile time (benches/compile-time.sh)"
if [[ -n $quick ]]; then ct_reps=1; else ct_reps=${CT_REPS:-3}; fi
if out=$(bash benches/compile-time.sh "$ct_reps" 2>>"$log"); then
  grep '^RESULT' <<<"$out" | sed "s|\$| @@ benches/compile-time.sh $ct_reps|" >>"$results"
else
  echo "RESULT bench=failed name=compile_time @@ benches/compile-time.sh $ct_reps" >>"$results"
  printf '%s\t%s\n' "benches/compile-time.sh $ct_reps" "see $log" >>"$suite/failures.txt"
fi

finished=$(date +%s)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
declare -p started finished load_before load_after redis_ok redis_version redis_where ct_reps \
  dispatch_table criterion_table QTASKS_BROKER_URL reps quick mem_tasks cg_low cg_high redis_tasks redis_backlog \
  redis_window apalis_redis_tasks rt_count mem_window >"$suite/meta.sh"
else
  # shellcheck disable=SC1091
  source "$suite/meta.sh"
fi

# ===========================================================================
# The report. Everything from `## Measured by hand` to the end of the file
# (the Postgres section, written from benches/postgres.sh's results, and the
# other sections measured by hand) is kept as it is: taken from $report, or
# from BENCHMARKS.md if $report has no such heading (a new report file).
say "writing $report"
kept_from=$report
grep -q '^## Measured by hand$' "$report" 2>/dev/null || kept_from=BENCHMARKS.md
kept_section=$(sed -n '/^## Measured by hand$/,$p' "$kept_from" 2>/dev/null)

# In memory: the median of the rounds, and of the per-round ratios.
mem() { sel bench=memory_throughput "$@" | get run_per_s | median; }
mem_range() { sel bench=memory_throughput "$@" | get run_per_s | minmax; }
mem_enq() { sel bench=memory_throughput "$@" | get enqueue_per_s | median; }
# round_ratio <filter a> <filter b>: median over rounds of a/b − 1 (percent).
round_ratio() {
  local a=$1 b=$2 r x y out=()
  for r in $(seq 1 "$reps"); do
    # shellcheck disable=SC2086
    x=$(sel bench=memory_throughput round=$r $a | get run_per_s | head -1)
    # shellcheck disable=SC2086
    y=$(sel bench=memory_throughput round=$r $b | get run_per_s | head -1)
    [[ -n $x && -n $y ]] && out+=("$(calc "($x / $y - 1) * 100")")
  done
  ((${#out[@]})) && printf '%s\n' "${out[@]}" | median
}
fmt_pct() { [[ -n ${1:-} ]] && calc "sprintf(\"%+.1f %%\", $1)" || echo "–"; }
ir() { sel bench=instructions "name=$1" | get per_task | head -1; }
ir_cmd() { sel bench=instructions "name=$1" | cmd; }

# Trend of a window list: least-squares slope × (windows − 1) / mean, in percent.
trend() {
  awk -v l="$1" 'BEGIN { n = split(l, r, ","); if (n < 2) { print ""; exit }
    for (i = 1; i <= n; i++) { sx += i; sy += r[i]; sxx += i * i; sxy += i * r[i] }
    b = (n * sxy - sx * sy) / (n * sxx - sx * sx); printf "%.1f", b * (n - 1) / (sy / n) * 100 }'
}

q1=$(mem system=qtasks mode=spawn plugins=none concurrency=1)
q64=$(mem system=qtasks mode=spawn plugins=none concurrency=64)
n1=$(mem system=qtasks mode=spawn plugins=noop56 concurrency=1)
n64=$(mem system=qtasks mode=spawn plugins=noop56 concurrency=64)
a1=$(mem system=apalis mode=inline concurrency=1)
a64=$(mem system=apalis mode=inline concurrency=64)
as64=$(mem system=apalis mode=spawn concurrency=64)
noop_cost1=$(round_ratio "system=qtasks mode=spawn plugins=noop56 concurrency=1" "system=qtasks mode=spawn plugins=none concurrency=1")
noop_cost64=$(round_ratio "system=qtasks mode=spawn plugins=noop56 concurrency=64" "system=qtasks mode=spawn plugins=none concurrency=64")
count_cost1=$(round_ratio "system=qtasks mode=spawn plugins=count56 concurrency=1" "system=qtasks mode=spawn plugins=none concurrency=1")
count_cost64=$(round_ratio "system=qtasks mode=spawn plugins=count56 concurrency=64" "system=qtasks mode=spawn plugins=none concurrency=64")

rd1=$(sel bench=redis_drain system=qtasks processes=1 concurrency=256 "tasks=$redis_tasks" | get run_per_s | head -1)
rd2=$(sel bench=redis_drain system=qtasks processes=2 concurrency=256 "tasks=$redis_tasks" | get run_per_s | head -1)
ad1=$(sel bench=redis_drain system=apalis processes=1 | get run_per_s | head -1)
ad2=$(sel bench=redis_drain system=apalis processes=2 | get run_per_s | head -1)
# Live: qtasks's median against apalis's best run.
rl1=$(sel bench=redis_live system=qtasks processes=1 | get run_per_s | median)
rl2=$(sel bench=redis_live system=qtasks processes=2 | get run_per_s | median)
al1=$(sel bench=redis_live system=apalis processes=1 | get run_per_s | sort -g | tail -1)
al2=$(sel bench=redis_live system=apalis processes=2 | get run_per_s | sort -g | tail -1)
# An apalis run that failed: "failed" instead of a ratio.
apalis_failed() { [[ -n $(sel bench=failed | grep -F "apalis_redis $1 " | grep -F " $2 256 ") ]]; }
vs_apalis() { # vs_apalis <qtasks> <apalis> <drain|live> <processes>
  if [[ -z ${2:-} ]] && apalis_failed "$3" "$4"; then echo "apalis failed"; else ratio "$1" "$2"; fi
}
rt=$(sel bench=redis_roundtrip system=qtasks)
rt50=$(get p50_us <<<"$rt")
rt99=$(get p99_us <<<"$rt")
mb=$(sel bench=memory_backlog system=qtasks)
# medwin <key>: the median of every window over the runs on stdin.
medwin() {
  get "$1" | awk -F, '{ for (i = 1; i <= NF; i++) v[i] = v[i] " " $i; if (NF > n) n = NF }
    END { for (i = 1; i <= n; i++) { m = split(v[i], a, " "); asort(a)
      printf "%s%s", (i > 1 ? "," : ""), (m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2) } print "" }'
}
mb_windows=$(medwin windows <<<"$mb")
mb_trend=$(trend "$mb_windows")
mb_cpu=$(medwin windows_cpu_us_per_task <<<"$mb")
mb_cpu_trend=$(trend "$mb_cpu")
mb_cpu_trends=$(get windows_cpu_us_per_task <<<"$mb" | while IFS= read -r w; do fmt_pct "$(trend "$w")"; echo; done | paste -sd, - | sed 's/,/, /g')
mb_errors=$(get errors <<<"$mb" | sort -g | tail -1)
rb=$(sel bench=redis_drain system=qtasks "tasks=$redis_backlog")
rb_windows=$(get windows <<<"$rb")
rb_trend=$(trend "$rb_windows")
rb_cpu=$(get windows_cpu_us_per_task <<<"$rb")
rb_cpu_trend=$(trend "$rb_cpu")

# Flat: the CPU time per task (not the wall-clock rate, which other jobs on
# the machine move) within ±10 % from the first to the last window, and no
# error; Redis only if measured.
flat() { [[ -n ${1:-} ]] && [[ $(calc "($1 > -10 && $1 < 10) ? 1 : 0") == 1 ]]; }
backlog_cond=""
if [[ -n $mb_cpu_trend ]]; then
  backlog_cond=0
  if flat "$mb_cpu_trend" && [[ $mb_errors == 0 ]]; then
    if [[ -z $rb ]] || { flat "$rb_cpu_trend" && [[ $(get errors <<<"$rb") == 0 ]]; }; then backlog_cond=1; fi
  fi
fi
noop_ir1=$(calc "($(ir qtasks_noop56_1) / $(ir qtasks_none_1) - 1) * 100")
noop_ir64=$(calc "($(ir qtasks_noop56_64) / $(ir qtasks_none_64) - 1) * 100")
noop_cond=""
[[ -n $noop_ir1 && -n $noop_ir64 ]] && noop_cond=$(calc "($noop_ir1 < 5 && $noop_ir64 < 5) ? 1 : 0")

# 5×: every ratio measured is at least 5 (a failed apalis run counts as met).
five_x=""
for pair in "$rd1 $ad1" "$rd2 $ad2" "$rl1 $al1" "$rl2 $al2"; do
  read -r q a <<<"$pair"
  [[ -z ${q:-} || -z ${a:-} ]] && continue
  [[ -z $five_x ]] && five_x=1
  [[ $(calc "($q >= 5 * $a) ? 1 : 0") == 1 ]] || five_x=0
done

# Issue 16's targets.
# In memory, inline runs against apalis `inline`: medians of the rounds.
qi1=$(mem system=qtasks mode=inline plugins=none concurrency=1)
qi64=$(mem system=qtasks mode=inline plugins=none concurrency=64)
inline_cond=""
[[ -n $qi1 && -n $qi64 && -n $a1 && -n $a64 ]] && inline_cond="$qi64 >= $a64 && $qi1 >= 0.5 * $a1"
mcmd() { sel bench=memory_throughput "$@" | cmd; }
# Instructions per task, judged on the inline runs.
iri1=$(ir qtasks_inline_none_1)
iri64=$(ir qtasks_inline_none_64)
ir_cond=""
[[ -n $iri1 && -n $iri64 ]] && ir_cond="$iri1 <= 6000 && $iri64 <= 6000"
# Enqueue rate and bytes per queued task: medians of the `memory` runs.
peak() { sel bench=memory_peak "system=$1" | get "$2" | median; }
peak_cmd() { sel bench=memory_peak "system=$1" | cmd; }
eq_q=$(peak qtasks enqueue_per_s)
eq_a=$(peak apalis enqueue_per_s)
bpt_q=$(peak qtasks bytes_per_task)
bpt_a=$(peak apalis bytes_per_task)
# disp <scenario>: instructions per trigger, from benches/callgrind.sh's table.
disp() { awk -F'|' -v s="\`$1\`" '{ gsub(/ /, "", $2); gsub(/ /, "", $3) } $2 == s { print $3; exit }' <<<"$dispatch_table"; }
d_async8=$(disp async8)
d_direct_async8=$(disp direct_async8)
async_cond=""
[[ -n $d_async8 && -n $d_direct_async8 ]] && async_cond="$d_async8 <= 1.3 * $d_direct_async8"
# Redis, one worker process: the drain of redis_tasks, the median of the live runs.
rdl=$(sel bench=redis_drain system=qtasks processes=1 concurrency=256 "tasks=$redis_tasks")
rll=$(sel bench=redis_live system=qtasks processes=1 concurrency=256)
rd1_srv=$(get server_cpu_us_per_task <<<"$rdl" | head -1)
rd1_wrk=$(get worker_cpu_us_per_task <<<"$rdl" | head -1)
rl1_srv=$(get server_cpu_us_per_task <<<"$rll" | median)
rl1_wrk=$(get worker_cpu_us_per_task <<<"$rll" | median)
rcg=$(sel bench=redis_server_instructions)
rcg_ir=$(get server_ir_per_task <<<"$rcg" | head -1)
us() { [[ -n ${1:-} ]] && calc "sprintf(\"%.1f µs\", $1)" || echo "–"; }
runs() { if [[ ${1:-} == 1 ]]; then echo "1 run"; else echo "${1:-0} runs"; fi; }
ms() { [[ -n ${1:-} ]] && calc "sprintf(\"%.3f ms\", $1 / 1000)" || echo "–"; }
# Compile time of the app with 50 plugins.
ctp=$(sel bench=compile_time variant=plugins)
ctb=$(sel bench=compile_time variant=bare)

verdict() { # verdict <condition awk expr> → met / missed
  if [[ -z ${1:-} ]]; then echo "not measured"; elif [[ $(calc "($1) ? 1 : 0") == 1 ]]; then echo "**met**"; else echo "**missed**"; fi
}
have() { [[ -n ${1:-} ]] && echo "$2" || echo ""; }

{
  echo "# Benchmarks"
  echo
  echo "Written by \`benches/run-all.sh\`${quick:+ (QUICK=1: small counts, a smoke run)} on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo "Do not edit by hand: run \`benches/run-all.sh\` again. Every row names the"
  echo "command that produced it (binaries in \`target/release\`, built by the script"
  echo "with \`cargo build --release -p qtasks-benches -p qtasks-peer-benches\`)."
  echo
  echo "## Machine and versions"
  echo
  echo "| | |"
  echo "| --- | --- |"
  echo "| cores (\`nproc\`) | $(nproc) |"
  echo "| CPU (\`lscpu\` model name) | $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }') |"
  echo "| memory | $(free -g | awk '/^Mem:/ { print $2 " GiB" }') |"
  echo "| kernel | $(uname -sr) |"
  echo "| rustc | $(rustc -V) |"
  echo "| qtasks | commit \`$(git rev-parse --short HEAD)\`$(git diff --quiet HEAD -- qtasks qtasks-macros || echo ' (with uncommitted changes in qtasks/)') |"
  echo "| apalis | $(awk '/^name = "apalis"$/ { getline; print $3 }' Cargo.lock | tr -d '"'), apalis-redis $(awk '/^name = "apalis-redis"$/ { getline; print $3 }' Cargo.lock | tr -d '"'), apalis-core $(awk '/^name = "apalis-core"$/ { getline; print $3 }' Cargo.lock | tr -d '"') |"
  echo "| Redis | ${redis_version:-not reachable}: $redis_where, same machine |"
  echo "| valgrind | $(valgrind --version 2>/dev/null || echo none) |"
  echo "| load average (1, 5, 15 min) | before $load_before, after $load_after |"
  echo "| suite duration | $(((finished - started) / 60)) min $(((finished - started) % 60)) s |"
  echo
  echo "The machine is a shared VM: other jobs compiled and tested on it during"
  echo "the run, so wall-clock numbers move by ±20 % from run to run. Compare"
  echo "numbers inside one table (measured minutes apart, in alternating order),"
  echo "and prefer the instruction counts, which do not depend on the load."
  echo
  echo "## Targets"
  echo
  echo "### Issue 16"
  echo
  echo "Each target judged on this run's numbers; the sections below give the"
  echo "details. In-memory rates are medians of $(runs "$reps") in rotating order."
  [[ -n $quick ]] && echo "QUICK=1: small counts, a smoke run; only a full run's verdicts count."
  echo
  echo "| target | measured | command | verdict |"
  echo "| --- | --- | --- | --- |"
  echo "| in memory, inline runs: qtasks ≥ 1.0× apalis's memory backend (\`inline\`) at concurrency 64, ≥ 0.5× at concurrency 1 | run tasks/s, medians: concurrency 64 $(n "$qi64") vs $(n "$a64") ($(ratio "$qi64" "$a64")); concurrency 1 $(n "$qi1") vs $(n "$a1") ($(ratio "$qi1" "$a1")); spawned runs (the default): $(ratio "$q64" "$a64") and $(ratio "$q1" "$a1") | \`$(mcmd system=qtasks mode=inline plugins=none concurrency=64)\`, \`$(mcmd system=apalis mode=inline concurrency=64)\` (and the same with concurrency 1) | $(verdict "$inline_cond") |"
  echo "| ≤ 6,000 instructions per task (callgrind, single-thread runtime; judged on the inline runs) | inline: concurrency 64 $(n "$iri64"), concurrency 1 $(n "$iri1"); spawned: $(n "$(ir qtasks_none_64)"), $(n "$(ir qtasks_none_1)"); apalis (\`inline\`): $(n "$(ir apalis_inline_64)"), $(n "$(ir apalis_inline_1)") | \`$(ir_cmd qtasks_inline_none_64)\` (and concurrency 1; N = $(n "$cg_low") and $(n "$cg_high")) | $(verdict "$ir_cond") |"
  echo "| enqueue rate ≥ apalis's (in memory) | $(n "$eq_q") vs $(n "$eq_a") tasks/s ($(ratio "$eq_q" "$eq_a")), medians of $(runs "$reps") of $(n "$mem_tasks") tasks; instructions per enqueue $(n "$(ir qtasks_enqueue)") vs $(n "$(ir apalis_enqueue)") ($(ratio "$(ir qtasks_enqueue)" "$(ir apalis_enqueue)")) | \`$(peak_cmd qtasks)\`, \`$(peak_cmd apalis)\`; \`$(ir_cmd qtasks_enqueue)\`, \`$(ir_cmd apalis_enqueue)\` | $(verdict "$(have "$eq_a" "$eq_q >= $eq_a")") |"
  echo "| ≤ 400 bytes per queued task | $(n "$bpt_q") bytes (apalis $(n "$bpt_a")), $(n "$mem_tasks") tasks queued, medians of $(runs "$reps") | \`$(peak_cmd qtasks)\` | $(verdict "$(have "$bpt_q" "$bpt_q <= 400")") |"
  echo "| a no-op listener on all 56 triggers costs < 5 % instructions per task | \`noop56\` against no plugin (spawned runs): concurrency 1 $(n "$(ir qtasks_none_1)") → $(n "$(ir qtasks_noop56_1)") ($(fmt_pct "$noop_ir1")), concurrency 64 $(n "$(ir qtasks_none_64)") → $(n "$(ir qtasks_noop56_64)") ($(fmt_pct "$noop_ir64")) | \`$(ir_cmd qtasks_noop56_64)\` against \`… none\` (and concurrency 1) | $(verdict "$noop_cond") |"
  echo "| 8 async listeners ≤ 1.3× the same handlers awaited by hand | \`async8\` ${d_async8:-–} vs \`direct_async8\` ${d_direct_async8:-–} instructions per trigger ($(ratio "$d_async8" "$d_direct_async8")) | \`benches/callgrind.sh\` | $(verdict "$async_cond") |"
  echo "| Redis, one worker process (2 cores shared with Redis): ≥ 80,000 no-op tasks/s drained from a 100 k backlog | $(n "$rd1") tasks/s ($(n "$redis_tasks") pre-filled, concurrency 256) | \`$(cmd <<<"$rdl")\` | $(verdict "$(have "$rd1" "$rd1 >= 80000")") |"
  echo "| Redis, one worker process: ≥ 60,000 tasks/s live (the client enqueueing) | $(n "$rl1") tasks/s (median of $(runs "$(get run_per_s <<<"$rll" | grep -c .)") of $(n "$redis_tasks")) | \`$(cmd <<<"$rll")\` | $(verdict "$(have "$rl1" "$rl1 >= 60000")") |"
  echo "| Redis server CPU per task ≤ 10 µs (judged on the drain) | drain: server $(us "$rd1_srv"), worker $(us "$rd1_wrk") per task; live (the server's includes the enqueues): server $(us "$rl1_srv"), worker $(us "$rl1_wrk"); the server executes $(n "$rcg_ir") instructions per task (callgrind, drain of $(n "$(get tasks <<<"$rcg" | head -1)")) | \`$(cmd <<<"$rdl")\`; \`$(cmd <<<"$rcg")\` | $(verdict "$(have "$rd1_srv" "$rd1_srv <= 10")") |"
  echo "| Redis round trip p50 ≤ 0.5 ms | p50 $(ms "$rt50"), p99 $(ms "$rt99") ($(n "$rt_count") round trips) | \`$(cmd <<<"$rt")\` | $(verdict "$(have "$rt50" "$rt50 <= 500")") |"
  echo "| no regression in dispatch or compile time | instructions per trigger: \`none\` $(disp none), \`sync8\` $(disp sync8), \`async8\` ${d_async8:-–}, \`dyn8\` $(disp dyn8), \`replace_sync8\` $(disp replace_sync8); 100 tasks with 50 plugins: clean \`cargo check\` $(get check_clean_s <<<"$ctp") s, after an edit $(get check_edit_s <<<"$ctp") s, release build $(get release_s <<<"$ctp") s (without the plugins $(get check_clean_s <<<"$ctb") s, $(get check_edit_s <<<"$ctb") s, $(get release_s <<<"$ctb") s) | \`benches/callgrind.sh\`, \`benches/compile-time.sh $ct_reps\` | see \"Dispatch\" and \"Compile time\" |"
  echo
  echo "### Earlier targets"
  echo
  echo "| target | measured | verdict |"
  echo "| --- | --- | --- |"
  echo "| a no-op listener on all 56 triggers costs < 5 % of in-memory throughput | instructions per task (judged): concurrency 1 $(n "$(ir qtasks_none_1)") → $(n "$(ir qtasks_noop56_1)") ($(fmt_pct "$noop_ir1")), concurrency 64 $(n "$(ir qtasks_none_64)") → $(n "$(ir qtasks_noop56_64)") ($(fmt_pct "$noop_ir64")); tasks/s, median of per-round ratios: concurrency 1 $(fmt_pct "$noop_cost1"), concurrency 64 $(fmt_pct "$noop_cost64") (within the noise) | $(verdict "$noop_cond") |"
  echo "| Redis: ≥ 50,000 tasks/s completed by one worker (2 cores) | $(n "$rd1") tasks/s (1 process, $(n "$redis_tasks") pre-filled, concurrency 256); $(n "$rl1") tasks/s while the client enqueues | $(verdict "$(have "$rd1" "$rd1 >= 50000")") |"
  echo "| Redis: round trip p50 ≤ 1 ms | p50 $(calc "sprintf(\"%.3f\", ${rt50:-0} / 1000)") ms, p99 $(calc "sprintf(\"%.3f\", ${rt99:-0} / 1000)") ms | $(verdict "$(have "$rt50" "$rt50 <= 1000")") |"
  echo "| Redis: qtasks ≥ 5× apalis | pre-filled: 1 process $(vs_apalis "$rd1" "$ad1" drain 1), 2 processes $(vs_apalis "$rd2" "$ad2" drain 2); live (against apalis's better run): 1 process $(vs_apalis "$rl1" "$al1" live 1), 2 processes $(vs_apalis "$rl2" "$al2" live 2) | $(verdict "$five_x") |"
  echo "| in memory: qtasks ≥ apalis (qtasks also keeps statuses and results) | concurrency 1: $(n "$q1") vs $(n "$a1") ($(ratio "$q1" "$a1")); concurrency 64: $(n "$q64") vs $(n "$a64") ($(ratio "$q64" "$a64")); apalis spawning each task: $(n "$as64") | $(verdict "$(have "$a1" "$q1 >= $a1 && $q64 >= $a64")") |"
  echo "| backlog: 1M queued tasks drain at a flat rate, no error | CPU time per task, first to last window (judged): in memory $(fmt_pct "$mb_cpu_trend") (median of $reps runs; the runs: $mb_cpu_trends), Redis ($(n "$redis_backlog") tasks, worker + server) $(fmt_pct "$rb_cpu_trend"); wall-clock rate: in memory $(fmt_pct "$mb_trend"), Redis $(fmt_pct "$rb_trend"); errors: $mb_errors in memory, $(get errors <<<"$rb" | head -1) on Redis | $(verdict "$backlog_cond") |"
  echo
  echo "A \"trend\" is the least-squares slope through the windows of a drain,"
  echo "times the number of windows − 1, over the mean: how much higher (+) or"
  echo "lower (−) the last window is than the first, without letting one noisy"
  echo "window decide. Flat here means a CPU-time trend within ±10 %."
  echo
  echo "## Dispatch: one trigger"
  echo
  echo "Instructions per trigger, from \`benches/callgrind.sh\` (see"
  echo "\`benches/README.md\` for the scenarios):"
  echo
  echo "$dispatch_table"
  echo
  if [[ -n $criterion_table ]]; then
    echo "Nanoseconds per trigger, \`cargo bench -p qtasks-benches --bench dispatch\`"
    echo "(criterion, 1 s warm-up, 3 s measurement per scenario):"
    echo
    echo "$criterion_table"
    echo
  fi
  echo "## In memory, end to end"
  echo
  echo "$(n "$mem_tasks") no-op tasks: enqueued one at a time, then run by one"
  echo "worker; run rate = tasks / (worker start → every task final and the worker"
  echo "shut down). Rounds: $reps, in rotating order; the median and the range"
  echo "of the rounds. qtasks stores a record per task (\`new → process → success\`,"
  echo "the result) and checks them all afterwards; apalis's memory backend is a"
  echo "channel and keeps nothing. \`noop56\`: one plugin with a sync no-op handler"
  echo "for each of the 56 triggers; \`count56\`: the same handlers, each adding 1"
  echo "to a per-thread counter, so they cannot be compiled away (25 calls per"
  echo "task: 5 at enqueue, 20 in the worker)."
  echo
  echo "| system | listener | concurrency | run tasks/s (median) | range | vs no plugin, same round | enqueue tasks/s | command |"
  echo "| --- | --- | ---: | ---: | --- | ---: | ---: | --- |"
  for c in 1 64; do
    for p in none noop56 count56; do
      f="system=qtasks mode=spawn plugins=$p concurrency=$c"
      # shellcheck disable=SC2086
      vs="–"
      [[ $p != none ]] && vs=$(fmt_pct "$(round_ratio "$f" "system=qtasks mode=spawn plugins=none concurrency=$c")")
      # shellcheck disable=SC2086
      echo "| qtasks (spawn) | $p | $c | $(n "$(mem $f)") | $(mem_range $f) | $vs | $(n "$(mem_enq $f)") | \`$(sel bench=memory_throughput $f | cmd)\` |"
    done
    f="system=qtasks mode=inline plugins=none concurrency=$c"
    # shellcheck disable=SC2086
    [[ -n $(sel bench=memory_throughput $f) ]] &&
      echo "| qtasks (inline) | none | $c | $(n "$(mem $f)") | $(mem_range $f) | – | $(n "$(mem_enq $f)") | \`$(mcmd $f)\` |"
    for m in inline spawn; do
      f="system=apalis mode=$m concurrency=$c"
      # shellcheck disable=SC2086
      [[ -z $(sel bench=memory_throughput $f) ]] && continue
      # shellcheck disable=SC2086
      echo "| apalis ($m) | – | $c | $(n "$(mem $f)") | $(mem_range $f) | – | $(n "$(mem_enq $f)") | \`$(sel bench=memory_throughput $f | cmd)\` |"
    done
  done
  echo
  echo "apalis \`inline\` polls the task futures inside the worker's own future"
  echo "(its default); \`spawn\` hands each to the tokio runtime"
  echo "(\`.parallelize(tokio::spawn)\`), as the qtasks worker does by default."
  echo "qtasks \`inline\` (\`E2E_INLINE=1\`, \`WorkerBuilder::run_inline\`) polls its"
  echo "runs inside the worker's own task, as apalis \`inline\` does."
  echo
  echo "### Instructions per task (callgrind)"
  echo
  echo "The whole process under \`valgrind --tool=callgrind\`, run with"
  echo "$(n "$cg_low") and $(n "$cg_high") tasks; per task = (Ir($(n "$cg_high")) − Ir($(n "$cg_low"))) / $(n $((cg_high - cg_low))),"
  echo "so start-up drops out. Enqueue and run together; the record check is"
  echo "skipped (\`E2E_SKIP_CHECK=1\`) and the runtime is tokio's single-thread one"
  echo "(\`E2E_CURRENT_THREAD=1\`, both systems): with the multi-thread runtime the"
  echo "counts move by ±5 % from run to run (idle workers spinning and parking),"
  echo "with one thread by ±0.5 %. The counts measure the work per task, not the"
  echo "hand-offs between threads of the runs above."
  echo
  echo "| run | concurrency | instructions/task | vs qtasks (spawn), no plugin | command |"
  echo "| --- | ---: | ---: | ---: | --- |"
  for c in 1 64; do
    base=$(ir "qtasks_none_$c")
    for p in none noop56 count56; do
      v=$(ir "qtasks_${p}_$c")
      [[ -z $v ]] && continue
      vs="–"
      [[ $p != none ]] && vs=$(pct "$v" "$base")
      echo "| qtasks (spawn), $p | $c | $(n "$v") | $vs | \`$(ir_cmd "qtasks_${p}_$c")\` |"
    done
    v=$(ir "qtasks_inline_none_$c")
    [[ -n $v ]] && echo "| qtasks (inline), none | $c | $(n "$v") | $(pct "$v" "$base") | \`$(ir_cmd "qtasks_inline_none_$c")\` |"
    v=$(ir "apalis_inline_$c")
    [[ -n $v ]] && echo "| apalis (inline) | $c | $(n "$v") | $(pct "$v" "$base") | \`$(ir_cmd "apalis_inline_$c")\` |"
  done
  for s in qtasks apalis; do
    v=$(ir "${s}_enqueue")
    [[ -n $v ]] && echo "| $s, enqueue only | – | $(n "$v") | – | \`$(ir_cmd "${s}_enqueue")\` |"
  done
  echo
  split=$(sel bench=instructions_split name=qtasks_inline_none_64)
  if [[ -n $split ]]; then
    st=$(get total <<<"$split")
    echo "### Where a no-op task's instructions go (inline, concurrency 64)"
    echo
    echo "Exclusive instructions per task of the \`qtasks (inline), none\` run at"
    echo "concurrency 64 above: for each function of \`callgrind_annotate"
    echo "--threshold=100\` on its two callgrind files (\`$suite/qtasks_inline_none_64.{lo,hi}.out\`),"
    echo "its count with $(n "$cg_high") tasks less that with $(n "$cg_low"), over $(n $((cg_high - cg_low))),"
    echo "summed by where the function is: exclusive, so a function's callees count"
    echo "where they are, and code inlined into it counts with it; a \`drop_in_place\`"
    echo "counts where the type it drops is, generic code where it is written."
    echo
    echo "| where | instructions/task | share |"
    echo "| --- | ---: | ---: |"
    for g in "memcpy:\`memcpy\`/\`memmove\`" \
      "malloc:\`malloc\`/\`free\` and glibc's malloc internals (with Rust's \`__rust_alloc\` shims)" \
      "backend:the memory backend (\`qtasks::backend::memory\`)" \
      "runtime:the executor and worker (\`qtasks::runtime\`)" \
      "client:the client (\`qtasks::client\`, \`qtasks::app\`)" \
      "tokio:tokio" \
      "rest:the rest (std, core and alloc, other qtasks modules, serde_json, uuid, tracing, hashing, clocks, the benchmark's own loop)"; do
      v=$(get "${g%%:*}" <<<"$split")
      echo "| ${g#*:} | $(n "$v") | $(calc "sprintf(\"%.1f %%\", $v / $st * 100)") |"
    done
    echo "| **total** (the run's count above: $(n "$(ir qtasks_inline_none_64)")) | $(n "$st") | 100 % |"
    echo
  fi
  echo "### Peak memory with $(n "$mem_tasks") queued tasks"
  echo
  echo "\`VmHWM\` of \`/proc/self/status\` after enqueueing, no worker; per task ="
  echo "(VmHWM − VmRSS before the first enqueue) / tasks. The enqueue rate is"
  echo "that of the same runs (one task at a time, no worker). Medians of"
  echo "$(runs "$reps"), the two systems alternating."
  echo
  echo "| system | peak RSS (MiB) | bytes per queued task | enqueue tasks/s | command |"
  echo "| --- | ---: | ---: | ---: | --- |"
  for s in qtasks apalis; do
    [[ -z $(sel bench=memory_peak "system=$s") ]] && continue
    echo "| $s | $(peak "$s" peak_mib) | $(n "$(peak "$s" bytes_per_task)") | $(n "$(peak "$s" enqueue_per_s)") | \`$(peak_cmd "$s")\` |"
  done
  echo
  echo "## Backlog: a pre-filled queue drains at a flat rate"
  echo
  echo "One worker drains a queue pre-filled with the given number of tasks;"
  echo "for every window of tasks, in order: the CPU time per task (in memory:"
  echo "every thread of the process; Redis: the worker process's threads plus"
  echo "the Redis server, \`INFO cpu\`) and the wall-clock rate. The CPU time is"
  echo "what tells whether a task costs more when the backlog is longer: the"
  echo "rate also moves whenever other jobs take the cores."
  echo
  echo "| backend | tasks | window | CPU µs per task, each window | CPU trend | tasks/s, each window | rate trend | errors | command |"
  echo "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | --- |"
  [[ -n $mb ]] && echo "| memory (concurrency 64), median of $reps runs | $(n "$(get tasks <<<"$mb" | head -1)") | $(n "$(get window <<<"$mb" | head -1)") | ${mb_cpu//,/, } | $(fmt_pct "$mb_cpu_trend") (runs: $mb_cpu_trends) | ${mb_windows//,/, } | $(fmt_pct "$mb_trend") | $mb_errors | \`$(cmd <<<"$mb")\` |"
  [[ -n $rb ]] && echo "| Redis (1 process, concurrency 256) | $(n "$(get tasks <<<"$rb")") | $(n "$(get window <<<"$rb")") | ${rb_cpu//,/, } | $(fmt_pct "$rb_cpu_trend") | ${rb_windows//,/, } | $(fmt_pct "$rb_trend") | $(get errors <<<"$rb") | \`$(cmd <<<"$rb")\` |"
  ab=$(sel bench=redis_drain system=apalis processes=1)
  if [[ -n $ab ]]; then
    aw=$(get windows <<<"$ab")
    echo "| apalis-redis (1 process) | $(n "$(get tasks <<<"$ab")") | $(n "$(get window <<<"$ab")") | – | – | ${aw//,/, } | $(fmt_pct "$(trend "$aw")") | $(get errors <<<"$ab") | \`$(cmd <<<"$ab")\` |"
  fi
  echo
  echo "apalis-redis 1.0 is in the table for contrast: every task it starts runs"
  echo "\`LREM <queue>:active 1 <id>\` (its \`acquire_leases.lua\`) on a list that"
  echo "holds the whole backlog, so a task costs time proportional to the backlog."
  echo
  echo "## Redis, end to end"
  echo
  echo "Redis ${redis_version:-?} on the same 2 cores as the workers and the client."
  echo "qtasks runs with its defaults (30 s leases, records kept 1 day, a"
  echo "\`done\` notification per task); apalis-redis with its defaults (locks"
  echo "and results on) and \`batch_size\` 100 (10 by default; 100 was faster in"
  echo "trial runs)."
  echo
  if [[ -z $redis_ok ]]; then
    echo "**Not measured: no Redis server answered at \`$QTASKS_BROKER_URL\`.**"
    echo
  fi
  echo "### Enqueue rate"
  echo
  echo "| system | tasks | client tasks in flight | tasks/s | command |"
  echo "| --- | ---: | ---: | ---: | --- |"
  for f in 1 64; do
    for s in qtasks apalis; do
      l=$(sel bench=redis_enqueue "system=$s" "in_flight=$f")
      [[ -n $l ]] && echo "| $s | $(n "$(get tasks <<<"$l")") | $f | $(n "$(get enqueue_per_s <<<"$l")") | \`$(cmd <<<"$l")\` |"
    done
  done
  echo
  echo "### Completion rate"
  echo
  echo "Worker processes (each a separate process, started and connected"
  echo "before the clock starts) take the tasks; the time runs until the last"
  echo "completion is published. *Pre-filled*: the queue holds every task"
  echo "before the workers start. *Live*: the workers start on an empty queue"
  echo "and the client enqueues (64 in flight) while they run. CPU per task,"
  echo "over the timed part: of the worker processes' threads"
  echo "(\`/proc/<pid>/task/*/schedstat\`) and of the Redis server (\`INFO cpu\`;"
  echo "in live runs it includes the enqueues); qtasks's runs print them."
  echo
  echo "| system | queue | worker processes | concurrency per worker | tasks | completed tasks/s | worker CPU per task | server CPU per task | command |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  for b in drain live; do
    for p in 1 2; do
      while IFS= read -r l; do
        [[ -z $l ]] && continue
        [[ $b == drain && $(get tasks <<<"$l") == "$redis_backlog" && $redis_backlog != "$redis_tasks" ]] && continue
        q="pre-filled"
        [[ $b == live ]] && q="live"
        s=$(get system <<<"$l")
        [[ $s == apalis ]] && s="apalis ($(get mode <<<"$l"), batch $(get batch_size <<<"$l"))"
        echo "| $s | $q | $p | $(get concurrency <<<"$l") | $(n "$(get tasks <<<"$l")") | $(n "$(get run_per_s <<<"$l")") | $(us "$(get worker_cpu_us_per_task <<<"$l")") | $(us "$(get server_cpu_us_per_task <<<"$l")") | \`$(cmd <<<"$l")\` |"
      done <<<"$(sel "bench=redis_$b" "processes=$p")"
      while IFS= read -r l; do
        [[ -z $l ]] && continue
        c=$(cmd <<<"$l")
        read -r _ _ tasks procs conc batch mode _ <<<"$c"
        [[ $procs == "$p" ]] || continue
        q="pre-filled"
        [[ $b == live ]] && q="live"
        echo "| apalis ($mode, batch $batch) | $q | $p | $conc | $(n "$tasks") | **failed** (see below) | – | – | \`$c\` |"
      done <<<"$(sel bench=failed | grep -F "apalis_redis $b ")"
    done
  done
  echo
  echo "apalis-redis 1.0 under these loads: with a backlog, each task it starts"
  echo "scans the backlog (\`LREM\`, see the backlog section), so its pre-filled"
  echo "rate falls with the queue length; with two worker processes the scans of"
  echo "one can make the other's commands wait past the redis-rs response"
  echo "timeout, and a worker process that gets \`timed out\` stops (seen in one"
  echo "of three full runs; such a run shows as failed). Live runs are bimodal:"
  echo "if the workers keep up from the start, the backlog stays near zero and"
  echo "apalis batches its per-task writes (up to 100 leases or results per"
  echo "script call, where qtasks runs one finish script per task); once a"
  echo "backlog builds up, the scans make it grow. Hence two live runs each, and"
  echo "the targets table compares qtasks's median with apalis's better run."
  echo
  echo "### Round trip"
  echo
  echo "One worker process (concurrency 64) and one client: enqueue one task,"
  echo "wait for its result (notified, not polled), $(n "$rt_count") times in a row"
  echo "after 200 warm-up round trips."
  echo
  echo "| p50 | p90 | p99 | max | mean | command |"
  echo "| ---: | ---: | ---: | ---: | ---: | --- |"
  [[ -n $rt ]] && echo "| $(get p50_us <<<"$rt") µs | $(get p90_us <<<"$rt") µs | $(get p99_us <<<"$rt") µs | $(get max_us <<<"$rt") µs | $(get mean_us <<<"$rt") µs | \`$(cmd <<<"$rt")\` |"
  echo
  if [[ -n $rcg ]]; then
    echo "### Instructions the server executes per task"
    echo
    echo "\`benches/redis-callgrind.sh\` runs a private \`redis-server\` (port 6393) under"
    echo "callgrind with instrumentation on for the timed part only (\`E2E_PHASE_HOOK\`),"
    echo "and one worker process drains the pre-filled queue. Valgrind slows the"
    echo "server about 50×, so the worker's batches are larger than at full speed:"
    echo "the count compares builds, it does not predict a rate."
    echo
    echo "| mode | tasks | concurrency | server instructions per task | command |"
    echo "| --- | ---: | ---: | ---: | --- |"
    echo "| $(get mode <<<"$rcg" | head -1) | $(n "$(get tasks <<<"$rcg" | head -1)") | $(get concurrency <<<"$rcg" | head -1) | $(n "$rcg_ir") | \`$(cmd <<<"$rcg")\` |"
    echo
  fi
  echo "## Compile time: 50 plugins on 100 tasks"
  echo
  echo "\`benches/compile-time.sh\` generates an app with 100 tasks (50 async, 50"
  echo "sync) and 50 plugins of 2 handlers each (sync and async, on per-task"
  echo "triggers), and the same app without the plugins, under"
  echo "\`target/compile-time/\`. Dependencies are built first (untimed); each"
  echo "step compiles the app crate only. Check times are the best of the"
  echo "repeats; the release build (fat LTO, codegen-units = 1) runs once."
  echo
  echo "| app | clean \`cargo check\` | \`cargo check\` after editing one task | clean \`cargo build --release\` | binary | stripped |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for v in bare plugins; do
    l=$(sel bench=compile_time "variant=$v")
    [[ -z $l ]] && continue
    name="100 tasks, no plugin"
    [[ $v == plugins ]] && name="100 tasks, 50 plugins (100 handlers)"
    echo "| $name | $(get check_clean_s <<<"$l") s (CPU $(get check_clean_cpu_s <<<"$l") s) | $(get check_edit_s <<<"$l") s (CPU $(get check_edit_cpu_s <<<"$l") s) | $(get release_s <<<"$l") s (CPU $(get release_cpu_s <<<"$l") s) | $(n "$(get binary_bytes <<<"$l")") B | $(n "$(get stripped_bytes <<<"$l")") B |"
  done
  lb=$(sel bench=compile_time variant=bare)
  lp=$(sel bench=compile_time variant=plugins)
  if [[ -n $lb && -n $lp ]]; then
    echo "| **plugins cost** | $(pct "$(get check_clean_s <<<"$lp")" "$(get check_clean_s <<<"$lb")") | $(pct "$(get check_edit_s <<<"$lp")" "$(get check_edit_s <<<"$lb")") | $(pct "$(get release_s <<<"$lp")" "$(get release_s <<<"$lb")") | $(pct "$(get binary_bytes <<<"$lp")" "$(get binary_bytes <<<"$lb")") | $(pct "$(get stripped_bytes <<<"$lp")" "$(get stripped_bytes <<<"$lb")") |"
  fi
  echo
  echo "Command: \`benches/compile-time.sh $ct_reps\`."
  failed=$(sel bench=failed)
  if [[ -n $failed ]]; then
    echo
    echo "## Failed runs"
    echo
    echo "These commands failed (their error output is in \`$log\`):"
    echo
    while IFS=$'\t' read -r c e; do echo "- \`$c\`: \`$e\`"; done <"$suite/failures.txt"
  fi
  # The last run of benches/python-interop.sh (not run here: it needs the
  # Python virtualenv), kept across runs of this script.
  if [[ -f benches/python-interop.md ]]; then
    echo
    echo "<!-- python-interop:begin -->"
    cat benches/python-interop.md
    echo "<!-- python-interop:end -->"
  fi
  if [[ -n $kept_section ]]; then
    echo
    printf '%s\n' "$kept_section"
  fi
} >"$report"
say "done in $(((finished - started) / 60)) min $(((finished - started) % 60)) s; wrote $report"
