#!/usr/bin/env bash
# Instructions per trigger for every dispatch scenario, counted by callgrind.
#
#   benches/callgrind.sh [scenario ...]      (default: every scenario)
#
# Builds `dispatch` in release (fat LTO, codegen-units 1), runs each scenario
# under callgrind twice, with LOW and HIGH triggers, counting only the
# measured function (`--toggle-collect='*scenario_<name>*'`), and prints a
# Markdown table of (Ir(HIGH) - Ir(LOW)) / (HIGH - LOW): the difference
# removes fixed costs (set-up, the first poll, building a registry).
# Environment: LOW (default 1000), HIGH (default 11000), OUT (where the
# callgrind files go, default target/callgrind).
set -euo pipefail
cd "$(dirname "$0")/.."

LOW="${LOW:-1000}"
HIGH="${HIGH:-11000}"
OUT="${OUT:-target/callgrind}"
BIN=target/release/dispatch

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }
cargo build --release -p qtasks-benches --bin dispatch >&2
mkdir -p "$OUT"

if (($# > 0)); then scenarios=("$@"); else mapfile -t scenarios < <("$BIN" --list); fi

# Total Ir of one run: the `summary:` (or `totals:`) line of the out file.
ir() {
  local name=$1 n=$2 file="$OUT/$1.$2.out"
  valgrind --tool=callgrind --toggle-collect="*scenario_${name}*" --callgrind-out-file="$file" \
    "$BIN" "$name" "$n" 2>"$OUT/$name.$n.log" >/dev/null
  awk '/^summary:/ { print $2; found = 1; exit } /^totals:/ { t = $2 } END { if (!found) print t + 0 }' "$file"
}

declare -A per
for s in "${scenarios[@]}"; do
  lo=$(ir "$s" "$LOW")
  hi=$(ir "$s" "$HIGH")
  if ((hi == 0)); then
    echo "callgrind.sh: no instruction counted in scenario_$s (renamed or merged?)" >&2
    exit 1
  fi
  per[$s]=$(awk -v lo="$lo" -v hi="$hi" -v d="$((HIGH - LOW))" 'BEGIN { printf "%.2f", (hi - lo) / d }')
  echo "callgrind.sh: $s: Ir($LOW) = $lo, Ir($HIGH) = $hi" >&2
done

# What each scenario is compared with: the same trigger with no chain, and
# the same handlers called by hand.
base_of() {
  case $1 in
    replace_*) echo replace_none ;;
    *) echo none ;;
  esac
}
ref_of() {
  case $1 in
    one_of_8) echo direct_one ;;
    sync8 | solo_sync8) echo direct_sync8 ;;
    async8 | dyn8) echo direct_async8 ;;
    replace_sync8) echo direct_replace_sync8 ;;
    *) echo "" ;;
  esac
}

echo
echo "| scenario | instructions/trigger | vs no chain | vs by hand |"
echo "| --- | ---: | ---: | ---: |"
for s in "${scenarios[@]}"; do
  b=$(base_of "$s")
  r=$(ref_of "$s")
  vs_base="–"
  if [[ -n ${per[$b]:-} && $s != "$b" ]]; then
    vs_base=$(awk -v x="${per[$s]}" -v y="${per[$b]}" 'BEGIN { printf "%+.2f", x - y }')
  fi
  vs_ref="–"
  if [[ -n $r && -n ${per[$r]:-} ]]; then
    vs_ref=$(awk -v x="${per[$s]}" -v y="${per[$r]}" -v r="$r" 'BEGIN { printf "%.3f× `%s`", x / y, r }')
  fi
  echo "| \`$s\` | ${per[$s]} | $vs_base | $vs_ref |"
done
