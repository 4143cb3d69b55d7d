#!/usr/bin/env bash
# Builds the `bench` preset, runs every workload against its raw-Asio baseline, and writes into
# bench/results/: results.json (Google Benchmark's own output), results.md (the ratios, the targets,
# the machine) and chart.png (the ratios as bars, each target as a line over its bar).
#
# Usage: scripts/run-bench.sh [extra taskyard_bench arguments, e.g. --benchmark_filter=W1]
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
mkdir -p "$out"
build/bench/bench/taskyard_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_format=json --benchmark_out="$out/results.json.tmp" --benchmark_out_format=json \
  "$@" >/dev/null
mv "$out/results.json.tmp" "$out/results.json"

compiler=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' build/bench/CMakeCache.txt)
python3 scripts/bench-report.py "$out/results.json" "$out" \
  --cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -n1)" \
  --cores "$(nproc)" \
  --compiler "$("$compiler" --version | head -n1) -O2" \
  --boost "$(sed -n 's/^#define BOOST_LIB_VERSION "\(.*\)"/\1/p' /usr/include/boost/version.hpp | tr _ .)"
(cd "$out" && gnuplot chart.gp)
echo "run-bench: wrote $out/results.json, $out/results.md, $out/chart.png"
