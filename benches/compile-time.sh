#!/usr/bin/env bash
# What 50 plugins cost at compile time: generates an app crate with 100
# tasks and 50 plugins (2 handlers each), and the same app without the
# plugins, under target/compile-time/, then for each one measures
#
#   - a clean `cargo check` of the app crate (its dependencies already built),
#   - `cargo check` after editing the body of one task (incremental),
#   - a clean `cargo build --release` of the app crate and the binary size.
#
# The apps depend on a snapshot of qtasks and qtasks-macros taken from the
# last commit (git archive HEAD), so edits in the working tree during the run
# cannot trigger a rebuild of qtasks inside a timed step.
#
# Both apps share one target directory, so dependencies are built once (an
# untimed warm-up) and every timed step compiles only the app crate. The
# release profile is the workspace's (fat LTO, codegen-units = 1).
#
# Usage: benches/compile-time.sh [check_repeats]   (default 3; the minimum is
# kept; the release build runs once per app)
#
# Prints one `RESULT bench=compile_time variant=… …` line per app: wall
# seconds and CPU seconds (user + system, of cargo and rustc), and bytes.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
repeats="${1:-3}"
dir="$root/target/compile-time"
target="$dir/target"
mkdir -p "$dir"

# The qtasks snapshot: the workspace manifest (for the inherited settings)
# with only the two crates as members.
snapshot="$dir/qtasks-src"
rm -rf "$snapshot"
mkdir -p "$snapshot"
git -C "$root" archive HEAD Cargo.toml Cargo.lock qtasks qtasks-macros | tar -x -C "$snapshot"
sed -i -e 's/^members = .*/members = ["qtasks", "qtasks-macros"]/' -e '/^default-members = /d' "$snapshot/Cargo.toml"

# Per-task triggers (name, context, output; output "" for observe triggers):
# every handler fires for every task the app runs.
triggers=(
  "worker_execute_before WorkerExecuteBefore TaskRecord"
  "broker_update BrokerUpdate TaskRecord"
  "storage_update StorageUpdate TaskRecord"
  "worker_run_task_before WorkerRunTaskBefore"
  "task_executor_middlewares_execute TaskExecutorMiddlewaresExecute"
  "task_executor_args_replace TaskExecutorArgsReplace Value"
  "task_executor_before_execute TaskExecutorBeforeExecute"
  "task_executor_run_task TaskExecutorRunTask Value"
  "task_executor_after_execute TaskExecutorAfterExecute"
  "task_executor_after_execute_result_replace TaskExecutorAfterExecuteResultReplace Value"
  "task_executor_decode TaskExecutorDecode Value"
  "task_executor_task_close TaskExecutorTaskClose"
  "worker_remove_finished_task WorkerRemoveFinishedTask TaskRecord"
  "broker_remove_finished_task BrokerRemoveFinishedTask TaskRecord"
  "storage_remove_finished_task StorageRemoveFinishedTask"
  "worker_execute_after WorkerExecuteAfter"
  "broker_add_worker BrokerAddWorker TaskMessage"
  "storage_add_process StorageAddProcess TaskMessage"
  "worker_add WorkerAdd TaskMessage"
  "qtasks_add_task_before_broker QtasksAddTaskBeforeBroker NewTask"
  "broker_add_before BrokerAddBefore TaskRecord"
  "storage_add StorageAdd TaskRecord"
  "broker_add_after BrokerAddAfter"
  "qtasks_add_task_after_broker QtasksAddTaskAfterBroker"
)

# generate <variant> <plugins>: writes the app crate to $dir/<variant>.
generate() {
  local variant="$1" plugins="$2" app="$dir/$1"
  rm -rf "$app"
  mkdir -p "$app/src/tasks"
  cat >"$app/Cargo.toml" <<EOF
[package]
name = "ct-$variant"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
qtasks = { path = "$snapshot/qtasks" }
tokio = { version = "1.47", features = ["rt", "rt-multi-thread", "macros", "time"] }

[profile.release]
lto = "fat"
codegen-units = 1

# Not part of the qtasks workspace.
[workspace]
EOF
  {
    for i in $(seq -f %03g 0 99); do echo "pub mod t$i;"; done
  } >"$app/src/tasks/mod.rs"
  for i in $(seq 0 99); do
    local n
    n=$(printf %03d "$i")
    if ((i % 2 == 0)); then
      cat >"$app/src/tasks/t$n.rs" <<EOF
/// Task $n.
#[qtasks::task(priority = $((i % 5)))]
pub async fn task_$n(a: i64, b: i64) -> i64 {
    a * b + $i
}
EOF
    else
      cat >"$app/src/tasks/t$n.rs" <<EOF
/// Task $n.
#[qtasks::task]
pub fn task_$n(s: String) -> String {
    format!("{s}-$i")
}
EOF
    fi
  done
  if ((plugins > 0)); then
    mkdir -p "$app/src/plugins"
    {
      for p in $(seq -f %02g 0 $((plugins - 1))); do echo "pub mod p$p;"; done
    } >"$app/src/plugins/mod.rs"
    for p in $(seq 0 $((plugins - 1))); do
      local n
      n=$(printf %02d "$p")
      {
        echo "#![allow(unused_imports)]"
        echo "use qtasks::model::{NewTask, TaskMessage, TaskRecord};"
        echo "use qtasks::triggers::*;"
        echo "use qtasks::Value;"
        echo "use std::sync::atomic::{AtomicU64, Ordering::Relaxed};"
        echo
        echo "/// Plugin $n: two handlers."
        echo "#[derive(Default)]"
        echo "pub struct P$n(AtomicU64);"
        echo
        echo "#[qtasks::plugin]"
        echo "impl P$n {"
        for h in 0 1; do
          local k=$(((2 * p + h) % ${#triggers[@]}))
          local t=(${triggers[$k]})
          local name="${t[0]}" ctx="${t[1]}" out="${t[2]:-}"
          local kw=""
          # Alternate sync and async handlers.
          if (((p + h) % 2 == 1)); then kw="async "; fi
          if [[ -z "$out" ]]; then
            echo "    ${kw}fn $name(&self, _ctx: &$ctx<'_>) {"
            echo "        self.0.fetch_add($((h + 1)), Relaxed);"
            echo "    }"
          else
            echo "    ${kw}fn $name(&self, _ctx: &$ctx<'_>) -> Option<$out> {"
            echo "        self.0.fetch_add($((h + 1)), Relaxed);"
            echo "        None"
            echo "    }"
          fi
        done
        echo "}"
      } >"$app/src/plugins/p$n.rs"
    done
  fi
  {
    echo "//! Generated by benches/compile-time.sh: 100 tasks, $plugins plugins."
    echo "mod tasks;"
    if ((plugins > 0)); then echo "mod plugins;"; fi
    echo
    echo "use std::time::Duration;"
    echo
    echo "#[tokio::main]"
    echo "async fn main() -> Result<(), Box<dyn std::error::Error>> {"
    echo "    let app = qtasks::QueueTasks::builder(\"ct\")"
    for i in $(seq -f %03g 0 99); do echo "        .task::<tasks::t$i::Task$i>()"; done
    if ((plugins > 0)); then
      for p in $(seq -f %02g 0 $((plugins - 1))); do echo "        .plugin(plugins::p$p::P$p::default())"; done
    fi
    echo "        .build()?;"
    echo "    let worker = app.worker().start().await?;"
    echo "    let a = app.add_task(\"task_000\", (6, 7)).await?.record(Duration::from_secs(5)).await?;"
    echo "    let b = app.add_task(\"task_001\", [\"x\"]).await?.record(Duration::from_secs(5)).await?;"
    echo "    println!(\"{:?} {:?}\", a.result, b.result);"
    echo "    worker.shutdown().await;"
    echo "    Ok(())"
    echo "}"
  } >"$app/src/main.rs"
}

# timed <cmd…>: runs the command quietly; sets WALL and CPU (seconds).
timed() {
  local out
  /usr/bin/time -f "%e %U %S" -o "$dir/time.out" "$@" >/dev/null 2>&1
  out=$(tail -1 "$dir/time.out")
  WALL=$(awk '{print $1}' <<<"$out")
  CPU=$(awk '{printf "%.2f", $2 + $3}' <<<"$out")
}

# min of two numbers
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }

generate bare 0
generate plugins 50

export CARGO_TARGET_DIR="$target"
# Warm-up, untimed: the dependencies in both profiles (a crate with the same
# dependencies and a one-line main; fast once target/compile-time exists).
mkdir -p "$dir/deps/src"
sed 's/^name = "ct-bare"/name = "ct-deps"/' "$dir/bare/Cargo.toml" >"$dir/deps/Cargo.toml"
echo 'fn main() { let _ = qtasks::QueueTasks::builder("deps"); }' >"$dir/deps/src/main.rs"
(cd "$dir/deps" && cargo check -q && cargo build -q --release)

for v in bare plugins; do
  app="$dir/$v"
  task="$app/src/tasks/t007.rs"
  cp "$task" "$task.orig"
  check_clean="" check_clean_cpu="" check_touch="" check_touch_cpu="" rel="" rel_cpu=""
  for _ in $(seq 1 "$repeats"); do
    (cd "$app" && cargo clean -q -p "ct-$v")
    timed bash -c "cd '$app' && cargo check -q"
    check_clean=$(min "$check_clean" "$WALL")
    check_clean_cpu=$(min "$check_clean_cpu" "$CPU")
    # Edit one task's body (a real change, not only the mtime), then put it back.
    sed -i 's/a \* b + 7$/a * b + 1007/; s/"{s}-7"/"{s}-1007"/' "$task"
    timed bash -c "cd '$app' && cargo check -q"
    check_touch=$(min "$check_touch" "$WALL")
    check_touch_cpu=$(min "$check_touch_cpu" "$CPU")
    cmp -s "$task" "$task.orig" && { echo "the edit of $task did not apply" >&2; exit 1; }
    cp "$task.orig" "$task"
  done
  (cd "$app" && cargo clean -q --release -p "ct-$v")
  timed bash -c "cd '$app' && cargo build -q --release"
  rel=$WALL
  rel_cpu=$CPU
  rm -f "$task.orig"
  bin="$target/release/ct-$v"
  size=$(stat -c %s "$bin")
  strip -o "$dir/ct-$v.stripped" "$bin"
  stripped=$(stat -c %s "$dir/ct-$v.stripped")
  # The app must run: two tasks, one async and one sync.
  ran=$("$bin")
  [[ "$ran" == *"42"*"x-1"* ]] || { echo "ct-$v printed: $ran" >&2; exit 1; }
  plugins=0
  [[ "$v" == plugins ]] && plugins=50
  echo "RESULT bench=compile_time variant=$v plugins=$plugins handlers=$((plugins * 2)) tasks=100 check_repeats=$repeats" \
    "check_clean_s=$check_clean check_clean_cpu_s=$check_clean_cpu check_edit_s=$check_touch" \
    "check_edit_cpu_s=$check_touch_cpu release_s=$rel release_cpu_s=$rel_cpu binary_bytes=$size" \
    "stripped_bytes=$stripped ran=ok"
done
