// BLAKE3 sse2 kernel for x86-64 (see impl.c).
#include <blake3_sse2_x86-64_unix.S>
