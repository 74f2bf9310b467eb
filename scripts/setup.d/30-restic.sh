#!/usr/bin/env bash
# restic, the peer `npm run bench` measures `isg restore` against (workload `restore`): Debian's
# package, from apt. Idempotent: a no-op once installed. Not root and missing: says so and exits 0
# (only that benchmark needs it; it then says restic is missing).
set -uo pipefail

say() { printf '[setup] %s\n' "$*"; }

if command -v restic >/dev/null 2>&1; then
  say "restic present ($(restic version 2>/dev/null | cut -d' ' -f2))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  say "restic NOT installed (run as root, or apt-get install restic): the restore benchmark needs it"
  exit 0
fi
say "installing restic (apt)"
apt-get update -qq
if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null; then
  say "restic installed ($(restic version | cut -d' ' -f2))"
else
  say "restic install FAILED: the restore benchmark needs it"
fi
exit 0
