// BLAKE3's reference C implementation, built from Debian's copy of it (librust-blake3-dev; its
// directory is binding.gyp's blake3_dir, on the include path): gyp compiles only sources inside
// the tree, so this file and the .S files beside it include them. blake3_dispatch.c picks the
// SIMD kernel (one .S each) at run time.
#include <blake3.c>
#include <blake3_dispatch.c>
#include <blake3_portable.c>
