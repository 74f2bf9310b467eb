// BLAKE3 avx2 kernel for x86-64 (see impl.c).
#include <blake3_avx2_x86-64_unix.S>
