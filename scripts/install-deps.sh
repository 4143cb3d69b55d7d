#!/usr/bin/env bash
# Installs, on Debian 12, whatever taskyard's build, tests and examples need that is missing.
# Idempotent: installs nothing when everything is there. Run as root (or through sudo).
set -euo pipefail

# clang-14 builds the `clang` preset (not a later Debian clang: clang-16 miscompiles multithreaded
# Asio coroutines at -O1/-O2); libclang-rt-14-dev is its libFuzzer (the `fuzz` preset); valgrind
# runs the examples under memcheck (the valgrind tests of the dev and clang presets); pkgconf
# provides pkg-config for the package.pkg_config test; python3-websockets is the third-party client
# of the websocket example's end-to-end test.
packages=(libboost1.81-dev catch2 libbenchmark-dev cmake g++ clang-14 libclang-rt-14-dev make ccache
  pkgconf python3-websockets valgrind)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
