#!/usr/bin/env bash
# Builds the native addon (native/, binding.gyp) with node-gyp against the system ISA-L, BLAKE3's
# C sources and zstd.
# Idempotent: skips when build/Release/isgfs_native.node was built from these very sources by
# this node. When ISA-L, a compiler or the build is missing or fails, says so in one line and
# exits 0: src/native then runs on its portable fallback, with identical results.
set -uo pipefail
cd "$(dirname "$0")/../.."

say() { printf '[setup] %s\n' "$*"; }
out=build/Release/isgfs_native.node
stampfile=build/.isgfs-addon.stamp
stamp=$( { node -p 'process.version + " " + process.arch'; find binding.gyp native -type f | sort | xargs cat; } | sha256sum | cut -d' ' -f1)

loads() { node -e "require('./$out')" >/dev/null 2>&1; }

if [ -f "$out" ] && [ -f "$stampfile" ] && [ "$(cat "$stampfile")" = "$stamp" ] && loads; then
  say "native addon up to date"
  exit 0
fi

missing=()
command -v c++ >/dev/null 2>&1 || missing+=("a C++ compiler")
command -v make >/dev/null 2>&1 || missing+=("make")
command -v python3 >/dev/null 2>&1 || missing+=("python3")
[ -f /usr/include/isa-l/erasure_code.h ] || [ -f /usr/local/include/isa-l/erasure_code.h ] || missing+=("ISA-L (libisal-dev)")
[ -n "$(sh scripts/blake3-dir.sh)" ] || missing+=("BLAKE3's C sources (librust-blake3-dev)")
[ -f /usr/include/zstd.h ] || missing+=("zstd (libzstd-dev)")
[ -d node_modules/node-addon-api ] && [ -d node_modules/node-gyp ] || missing+=("node-addon-api/node-gyp (npm ci)")
if ((${#missing[@]})); then
  say "native addon NOT built: missing $(IFS=,; echo "${missing[*]}" | sed 's/,/, /g'); isgfs runs on the portable fallback (same results, slower)"
  exit 0
fi

# Build against the headers installed beside this node (no download), when it has them.
args=()
nodedir=$(dirname "$(dirname "$(node -p process.execPath)")")
[ -f "$nodedir/include/node/node_api.h" ] && args+=("--nodedir=$nodedir")

say "building the native addon (node-gyp: ISA-L, BLAKE3, zstd)"
log=$(mktemp /tmp/isgfs-addon-build.XXXXXX.log)
if node node_modules/node-gyp/bin/node-gyp.js rebuild "${args[@]}" >"$log" 2>&1 && loads; then
  echo "$stamp" > "$stampfile"
  rm -f "$log"
  say "native addon built: $out"
else
  say "native addon build FAILED (log: $log); isgfs runs on the portable fallback (same results, slower)"
fi
exit 0
