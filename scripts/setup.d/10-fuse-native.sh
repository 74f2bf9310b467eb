#!/usr/bin/env bash
# The patched FUSE binding: applies patches/fuse-native+2.2.6.patch to node_modules/fuse-native
# and builds it with node-gyp against the system libfuse 3 (pkg-config fuse3).
#
# Idempotent, and a quick no-op once done: the stamp file records the sha256 of the patch that was
# applied and built. npm ci replaces node_modules/fuse-native with the pristine package (whose own
# install step just finds its prebuilt binary and builds nothing), so after it this script patches
# and builds again. When the patch file changes, the pristine package is restored first (npm pack,
# normally from the npm cache) and the new patch applied to it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

say() { printf '[setup] fuse-native: %s\n' "$*"; }
die() { printf '[setup] fuse-native: ERROR: %s\n' "$*" >&2; exit 1; }

VERSION=2.2.6
PKG=node_modules/fuse-native
PATCH=patches/fuse-native+$VERSION.patch
STAMP=$PKG/.isgfs-patch.stamp
MARKER='isgfs patch'
BINARY=$PKG/build/Release/fuse.node

[ -f "$PATCH" ] || die "$PATCH is missing"
[ -f "$PKG/package.json" ] || die "$PKG is not installed (run npm ci first)"
have=$(node -p "require('./$PKG/package.json').version")
[ "$have" = "$VERSION" ] || die "$PKG is $have; $PATCH is for $VERSION"

want=$(sha256sum "$PATCH" | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "$BINARY" ]; then
  say "patched and built (up to date)"
  exit 0
fi

restore_pristine() {
  say "restoring the pristine $VERSION package"
  local tmp f
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && npm pack --silent "fuse-native@$VERSION" >/dev/null 2>&1); then
    rm -rf "$tmp"
    die "npm pack fuse-native@$VERSION failed"
  fi
  tar -xzf "$tmp"/fuse-native-"$VERSION".tgz -C "$tmp"
  for f in $(grep -E '^\+\+\+ b/' "$PATCH" | sed -E 's#^\+\+\+ b/##'); do
    cp "$tmp/package/${f#"$PKG"/}" "$f"
  done
  rm -rf "$tmp"
}

patched() { grep -q "$MARKER" "$PKG/fuse-native.c" 2>/dev/null && grep -q "$MARKER" "$PKG/index.js" 2>/dev/null; }

# 1. The patch. A stamp that names another patch means the sources carry an older version of it.
if patched && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" != "$want" ]; then
  restore_pristine
fi
if patched && patch -d "$ROOT" -p1 -R --dry-run --batch -s < "$PATCH" >/dev/null 2>&1; then
  say "patch already applied"
else
  if patched; then restore_pristine; fi # patched, but not with this patch
  patch -d "$ROOT" -p1 --forward --batch --dry-run -s < "$PATCH" >/dev/null \
    || die "$PATCH does not apply to $PKG (not the pristine $VERSION package?)"
  patch -d "$ROOT" -p1 --forward --batch -s --no-backup-if-mismatch < "$PATCH"
  say "patch applied"
fi
rm -f "$STAMP"

# 2. The build, against the system libfuse 3.
pkg-config --exists fuse3 || die "libfuse 3 development files not found (apt-get install libfuse3-dev pkg-config)"
# node-gyp: the project's (a devDependency), else the one bundled with npm.
gyp_js="$ROOT/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp_js" ] || gyp_js="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp_js" ] || die "node-gyp not found (npm ci installs it)"
GYP=(node "$gyp_js")
gyp_args=(rebuild)
# Node's own headers when they are installed next to it (Debian's nodejs, nodesource): no download.
nodedir=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [ -f "$nodedir/include/node/node_api.h" ]; then gyp_args+=("--nodedir=$nodedir"); fi
say "building against libfuse $(pkg-config --modversion fuse3)"
if ! (cd "$PKG" && "${GYP[@]}" "${gyp_args[@]}" >build.log 2>&1); then
  tail -n 40 "$PKG/build.log" >&2
  die "node-gyp failed (full log: $PKG/build.log)"
fi
rm -f "$PKG/build.log"

# 3. Check that the binding loads and is the patched one, then stamp.
node -e "
  const F = require('./$PKG');
  if (F.ISGFS_PATCH_VERSION !== 3) { console.error('unexpected binding'); process.exit(1); }
" || die "the built binding does not load"
echo "$want" > "$STAMP"
say "patched and built"
