#!/usr/bin/env bash
# Builds the `bench` preset, runs the whole suite (every workload against its raw-Asio baseline)
# several times, one run after the other, and writes into bench/results/: run-N.json (Google
# Benchmark's own output of each run), results.md (the ratios, their range over the runs, the
# targets, the machine) and chart.png (the ratios as bars with their range, each target as a line
# over its bar). A ratio is taken within one run; this machine's load moves it from run to run, so
# the report gives its median over the runs.
#
# Usage: scripts/run-bench.sh [extra taskyard_bench arguments, e.g. --benchmark_filter=W1]
# TASKYARD_BENCH_RUNS (default 5) sets the number of runs; each takes the median of 3 repetitions.
# Installs gnuplot-nox if it is missing (Debian 12; as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v gnuplot >/dev/null 2>&1; then
  echo "run-bench: installing gnuplot-nox"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends gnuplot-nox </dev/null
fi

cmake --workflow --preset bench

out=bench/results
runs=${TASKYARD_BENCH_RUNS:-5}
mkdir -p "$out"
rm -f "$out"/results.json "$out"/run-*.json
results=()
for ((i = 1; i <= runs; i++)); do
  echo "run-bench: run $i of $runs"
  build/bench/bench/taskyard_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_format=json --benchmark_out="$out/run-$i.json.tmp" --benchmark_out_format=json \
    "$@" >/dev/null
  mv "$out/run-$i.json.tmp" "$out/run-$i.json"
  results+=("$out/run-$i.json")
done

compiler=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' build/bench/CMakeCache.txt)
python3 scripts/bench-report.py "$out" "${results[@]}" \
  --cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -n1)" \
  --cores "$(nproc)" \
  --compiler "$("$compiler" --version | head -n1) -O2" \
  --boost "$(sed -n 's/^#define BOOST_LIB_VERSION "\(.*\)"/\1/p' /usr/include/boost/version.hpp | tr _ .)"
(cd "$out" && gnuplot chart.gp)
echo "run-bench: wrote $out/run-1.json to $out/run-$runs.json, $out/results.md, $out/chart.png"
