// BLAKE3 sse41 kernel for x86-64 (see impl.c).
#include <blake3_sse41_x86-64_unix.S>
