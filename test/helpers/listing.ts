/** What a tree holds, as one comparable string (python3's os.walk and lstat: no FUSE call from the jest process). */
import { sh } from './proc';

/** Every entry under `root`: relative path, mode, uid, gid, mtime (ns), nlink, size, xattrs, link target. */
const LISTING = `
import os, sys, json
root = sys.argv[1]
out = []
for d, dirs, files in os.walk(root):
    dirs.sort()
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        st = os.lstat(p)
        try:
            xs = sorted((x, os.getxattr(p, x, follow_symlinks=False).hex()) for x in os.listxattr(p, follow_symlinks=False))
        except OSError:
            xs = []
        out.append([os.path.relpath(p, root), st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink,
                    st.st_size if not os.path.isdir(p) else 0, xs, os.readlink(p) if os.path.islink(p) else None])
json.dump(out, sys.stdout)
`;

/** The listing of `dir` (JSON): compare two trees' contents and metadata with it, beside `diff -r`. */
export function treeListing(dir: string): Promise<string> {
  return sh(`python3 -c '${LISTING}' ${dir}`, { timeout: 300_000 });
}
