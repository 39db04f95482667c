#!/usr/bin/env bash
# benches/peers/uws-peer/build.sh: builds the uWebSockets comparison peer (main.cpp, written
# here) against a uWebSockets checkout you provide — uWebSockets is not a dependency of wsloop.
#
# usage: benches/peers/uws-peer/build.sh UWEBSOCKETS_DIR [USOCKETS_DIR] [--tls]
#   UWEBSOCKETS_DIR  a clone of github.com/uNetworking/uWebSockets
#   USOCKETS_DIR     a clone of github.com/uNetworking/uSockets (default UWEBSOCKETS_DIR/uSockets,
#                    the submodule)
#   --tls            build uSockets with OpenSSL (WITH_OPENSSL=1, needs libssl-dev): --cert/--key work
# Writes benches/peers/uws-peer/target/uws-peer (or into $UWS_OUT) (and uws-peer-tls with --tls), and uWebSockets'
# own load generator benchmarks/load_test.c as target/uws-load-test. Flags are uWebSockets' own
# build's (build.c: -march=native -O3 -flto); UWS_MARCH=x86-64-v3 (say) replaces -march=native,
# for valgrind, which does not know every AVX-512 instruction (scripts/fanout-instructions --uws).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TLS=0
ARGS=()
for a in "$@"; do
  case "$a" in
    --tls) TLS=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ARGS+=("$a") ;;
  esac
done
[ "${#ARGS[@]}" -ge 1 ] || { echo "usage: build.sh UWEBSOCKETS_DIR [USOCKETS_DIR] [--tls]" >&2; exit 2; }
UWS="$(cd "${ARGS[0]}" && pwd)"
US="$(cd "${ARGS[1]:-$UWS/uSockets}" && pwd)"
[ -f "$UWS/src/App.h" ] || { echo "build.sh: $UWS/src/App.h not found (not a uWebSockets checkout)" >&2; exit 2; }
[ -f "$US/src/libusockets.h" ] || { echo "build.sh: $US/src/libusockets.h not found (uSockets missing)" >&2; exit 2; }
OUT="${UWS_OUT:-$HERE/target}"
mkdir -p "$OUT"
MARCH="-march=${UWS_MARCH:-native}"
CXXFLAGS=(-std=c++20 "$MARCH" -O3 -flto -DUWS_NO_ZLIB -I"$UWS/src" -I"$US/src")

build_usockets() { # $1: build dir, rest: make variables
  local dir="$1"; shift
  rm -rf "$dir" && mkdir -p "$dir"
  cp -r "$US/src" "$US/Makefile" "$dir/"
  make -C "$dir" -s "$@" >/dev/null
}

build_usockets "$OUT/usockets-plain"
g++ "${CXXFLAGS[@]}" -DLIBUS_NO_SSL "$HERE/main.cpp" "$OUT/usockets-plain/uSockets.a" -o "$OUT/uws-peer"
gcc -O3 "$MARCH" -flto -DLIBUS_NO_SSL -I"$US/src" "$UWS/benchmarks/load_test.c" \
  "$OUT/usockets-plain/uSockets.a" -lz -o "$OUT/uws-load-test"
echo "built $OUT/uws-peer and $OUT/uws-load-test"
if [ "$TLS" = 1 ]; then
  build_usockets "$OUT/usockets-tls" WITH_OPENSSL=1
  g++ "${CXXFLAGS[@]}" -DLIBUS_USE_OPENSSL "$HERE/main.cpp" "$OUT/usockets-tls/uSockets.a" \
    -lssl -lcrypto -lstdc++ -o "$OUT/uws-peer-tls"
  echo "built $OUT/uws-peer-tls"
fi
