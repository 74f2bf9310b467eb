// A block decoded straight from its file (blockfile.cc); BLAKE3 from the reference C sources.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace isg {

struct BlockKeys {
  uint8_t idKey[32];   // keyed BLAKE3 key of block ids
  uint8_t encKey[32];  // keyed BLAKE3 key of per-block AES keys
};

// Exactly one of: plaintext (data, len; free(owner) releases it), an I/O error (err, syscall, errPath),
// or damage (corrupt, a reason worded as codec.ts words it).
struct DecodedBlock {
  void* owner = nullptr;
  uint8_t* data = nullptr;
  size_t len = 0;
  int err = 0;
  const char* syscall = "";
  std::string errPath;
  const char* corrupt = nullptr;
};

// Where a block's encoded bytes lie: [offset, offset + length) of a file (length < 0: all of it).
struct FilePart {
  std::string path;
  int64_t offset = 0;
  int64_t length = -1;
  // Or, when rebuildK > 0, not read from path but rebuilt: shard `target` of a k + m code, from
  // the same range of k other shards, shard srcIdx[i] at srcOffset[i] of srcPath[i] (length bytes).
  int rebuildK = 0, rebuildM = 0;
  uint8_t target = 0;
  std::vector<uint8_t> srcIdx;
  std::vector<std::string> srcPath;
  std::vector<int64_t> srcOffset;
};

// The bytes of the parts, one after the other, decoded as block `id`. zstd: the repository
// compresses with zstd (a compressed block is decompressed); without it, as codec.ts's 'none',
// the flag is ignored. An error names the part it came from (errPath).
DecodedBlock decodeBlockFile(const BlockKeys& keys, bool zstd, const std::vector<FilePart>& parts, const uint8_t id[32]);

// enc[0, len) decoded as block `id`, as decodeBlockFile. owned: enc is malloc'd memory that the
// decode takes over (it decrypts in place, and frees or returns it); else enc is only read.
DecodedBlock decodeBlockBytes(const BlockKeys& keys, bool zstd, uint8_t* enc, size_t len, const uint8_t id[32], bool owned);

}  // namespace isg
