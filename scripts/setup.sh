#!/usr/bin/env bash
# The one set-up step (README): system packages, npm ci, the patched FUSE binding, the addon, the build.
# Idempotent: every stage skips itself when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

# 1. System packages. fuse3 (fusermount3) and libfuse3-dev: our patched fuse-native builds against
#    libfuse 3 (1 MiB FUSE requests; libfuse 2, which it was written for, caps them at 128 KiB).
#    For the addon: libisal-dev (Reed-Solomon), librust-blake3-dev (BLAKE3's reference C sources,
#    which Debian ships in the crate's c/ directory) and libzstd-dev (decoding blocks in C), and a
#    compiler. The tools the tests drive, and gocryptfs, the peer `npm run bench` measures.
PKGS=(fuse3 libfuse3-dev libisal-dev librust-blake3-dev libzstd-dev build-essential pkg-config python3 rsync sqlite3 git gocryptfs)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then say "missing system packages: ${missing[*]} (run as root, or install them)"; exit 1; fi
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  say "system packages present"
fi

# 2. npm ci, skipped when node_modules was installed from this very lock file.
stamp=node_modules/.isgfs-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "node_modules up to date"
else
  say "npm ci"
  if ! npm ci --no-audit --no-fund; then
    # Only a fallback: the lock file is complete (npm ci succeeds on a fresh machine). Should npm
    # ever refuse it again over other platforms' optional binaries (npm/cli#4828, #8320), npm
    # install honours the versions the lock file records and fills in the rest; the lock file is kept.
    say "npm ci refused the lock file; npm install instead"
    cp package-lock.json /tmp/isgfs-package-lock.$$
    npm install --no-audit --no-fund
    cp /tmp/isgfs-package-lock.$$ package-lock.json && rm -f /tmp/isgfs-package-lock.$$
  fi
  echo "$want" > "$stamp"
fi

# 3. Native parts (each script is idempotent on its own).
for s in scripts/setup.d/*.sh; do [ -e "$s" ] && bash "$s"; done

# 4. TypeScript.
say "tsc"
npx tsc -p tsconfig.json
say "ready: ./bin/isg"
