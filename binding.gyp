{
  "variables": {
    # BLAKE3's reference C implementation, as Debian ships it (librust-blake3-dev, installed by
    # scripts/setup.sh): the crate's c/ directory. Found by scripts/blake3-dir.sh.
    "blake3_dir": "<!(sh scripts/blake3-dir.sh)"
  },
  "targets": [
    {
      "target_name": "isgfs_native",
      "sources": [
        "native/addon.cc", "native/rs_glue.cc", "native/crc_glue.cc", "native/cdc_glue.cc", "native/pread_glue.cc",
        "native/aead_glue.cc", "native/blockfile_glue.cc", "native/lock_glue.cc", "native/xattr_glue.cc", "native/writefile_glue.cc",
        "native/rs.cc", "native/aead.cc", "native/blockfile.cc", "native/blake3/impl.c"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<(blake3_dir)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O3"],
      "cflags_cc": ["-O3", "-std=c++17"],
      "libraries": ["-lisal", "-lzstd", "-ldl"],
      "conditions": [
        ["target_arch=='x64'", {
          "sources": ["native/blake3/sse2.S", "native/blake3/sse41.S", "native/blake3/avx2.S", "native/blake3/avx512.S"]
        }, {
          "defines": ["BLAKE3_NO_SSE2", "BLAKE3_NO_SSE41", "BLAKE3_NO_AVX2", "BLAKE3_NO_AVX512"]
        }]
      ]
    }
  ]
}
