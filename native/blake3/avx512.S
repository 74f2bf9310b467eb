// BLAKE3 avx512 kernel for x86-64 (see impl.c).
#include <blake3_avx512_x86-64_unix.S>
