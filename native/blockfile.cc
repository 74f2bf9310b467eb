// Decoding a block straight from a file, in one job on the libuv pool: read its bytes (or rebuild
// a piece on a lost shard from k others, Reed-Solomon through ISA-L), open the AES-256-GCM
// envelope in place, decompress (zstd) and check the keyed BLAKE3 id. The block format is
// src/block/codec.ts's; this is its decode, byte for byte, for blocks in files (a local-tier
// block file, or ranges of data shards on local backends) or in memory.
//
// Why not the codec workers: a block's bytes then cross isolates twice, and V8 counts every
// ArrayBuffer that appears in an isolate as new external memory, starting a full collection per
// 64 MiB; measured, the collector took about a fifth of a cold read's CPU, and the messages and
// the workers' own JS more. Here the only new memory JS sees is the plaintext.
#include "blockfile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <zstd.h>

#include "aead.h"
#include "blake3.h"
#include "rs.h"

namespace isg {

namespace {

constexpr size_t kHeader = 3, kNonce = 12, kTag = 16;
constexpr uint8_t kFormatVersion = 1, kCipherAes256Gcm = 1, kFlagCompressed = 1;
// A decompressed size beyond this is not a block of ours (FastCDC's largest is a few MiB).
constexpr unsigned long long kMaxPlain = 256ull << 20;

void keyedHash(const uint8_t key[32], const uint8_t* data, size_t len, uint8_t out[32]) {
  blake3_hasher h;
  blake3_hasher_init_keyed(&h, key);
  blake3_hasher_update(&h, data, len);
  blake3_hasher_finalize(&h, out, 32);
}

// Reads [offset, offset + len) of an open file, fewer bytes at its end; -1 with errno on failure.
ssize_t preadFull(int fd, uint8_t* out, size_t len, int64_t offset) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = ::pread(fd, out + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(got);
}

// Reads len bytes of a part into out (*got: how many there were); false with r's error set.
bool readPart(const FilePart& p, uint8_t* out, size_t len, DecodedBlock* r, size_t* got) {
  int fd = ::open(p.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r->err = errno;
    r->syscall = "open";
    r->errPath = p.path;
    return false;
  }
  ssize_t n = preadFull(fd, out, len, p.offset);
  int readErr = errno;
  ::close(fd);
  if (n < 0) {
    r->err = readErr;
    r->syscall = "read";
    r->errPath = p.path;
    return false;
  }
  *got = static_cast<size_t>(n);
  return true;
}

// Rebuilds len bytes of a part's target shard into out from its k sources; false with r's error set.
bool rebuildPart(const FilePart& p, uint8_t* out, size_t len, DecodedBlock* r) {
  std::string err;
  auto tables = codingTables(p.rebuildK, p.rebuildM, p.srcIdx, std::vector<uint8_t>{p.target}, &err);
  if (!tables) {
    r->corrupt = "cannot rebuild from these shards";
    return false;
  }
  std::vector<uint8_t> in(len * static_cast<size_t>(p.rebuildK));
  std::vector<uint8_t*> srcs;
  for (int i = 0; i < p.rebuildK; i++) {
    FilePart src;
    src.path = p.srcPath[i];
    src.offset = p.srcOffset[i];
    size_t got;
    if (!readPart(src, in.data() + len * i, len, r, &got)) return false;
    if (got != len) {
      r->corrupt = "truncated";
      return false;
    }
    srcs.push_back(in.data() + len * i);
  }
  uint8_t* outs[1] = {out};
  applyTables(*tables, len, srcs.data(), outs);
  return true;
}

}  // namespace

DecodedBlock decodeBlockFile(const BlockKeys& keys, bool zstd, const std::vector<FilePart>& parts, const uint8_t id[32]) {
  DecodedBlock r;
  size_t len = 0;
  std::vector<FilePart> sized = parts;
  for (auto& p : sized) {
    if (p.length < 0 && p.rebuildK == 0) {  // the whole file
      struct stat st;
      if (::stat(p.path.c_str(), &st) != 0) {
        r.err = errno;
        r.syscall = "stat";
        r.errPath = p.path;
        return r;
      }
      p.offset = 0;
      p.length = st.st_size;
    }
    len += static_cast<size_t>(p.length);
  }
  uint8_t* enc = static_cast<uint8_t*>(std::malloc(len > 0 ? len : 1));
  if (enc == nullptr) {
    r.err = ENOMEM;
    r.syscall = "malloc";
    return r;
  }
  size_t at = 0;
  bool whole = true;
  for (const auto& p : sized) {
    size_t got = static_cast<size_t>(p.length);
    bool ok = p.rebuildK > 0 ? rebuildPart(p, enc + at, got, &r) : readPart(p, enc + at, got, &r, &got);
    if (!ok) {
      std::free(enc);
      return r;
    }
    if (got != static_cast<size_t>(p.length)) whole = false;
    at += static_cast<size_t>(p.length);
  }
  if (!whole) {
    std::free(enc);
    r.corrupt = "truncated";
    return r;
  }
  return decodeBlockBytes(keys, zstd, enc, len, id, true);
}

DecodedBlock decodeBlockBytes(const BlockKeys& keys, bool zstd, uint8_t* enc, size_t len, const uint8_t id[32], bool owned) {
  DecodedBlock r;
  uint8_t* work = owned ? enc : nullptr;  // memory of ours, freed or handed over on every path
  auto fail = [&](const char* why) {
    std::free(work);
    r.corrupt = why;
    return r;
  };
  if (len < kHeader + kNonce + kTag) return fail("truncated");
  if (enc[0] != kFormatVersion) return fail("unknown block format version");
  if (enc[2] != kCipherAes256Gcm) return fail("unknown cipher");

  uint8_t aesKey[32], aad[kHeader + 32];
  keyedHash(keys.encKey, id, 32, aesKey);
  std::memcpy(aad, enc, kHeader);
  std::memcpy(aad + kHeader, id, 32);
  const uint8_t* cipher = enc + kHeader + kNonce;
  size_t bodyLen = len - kHeader - kNonce - kTag;
  // In place when the bytes are ours (GCM is a stream cipher; OpenSSL allows out == in), else into
  // new memory: a caller's bytes may be a view of memory others read too.
  uint8_t* body = enc + kHeader + kNonce;
  if (!owned) {
    work = static_cast<uint8_t*>(std::malloc(bodyLen > 0 ? bodyLen : 1));
    if (work == nullptr) {
      r.err = ENOMEM;
      r.syscall = "malloc";
      return r;
    }
    body = work;
  }
  if (!aes256GcmOpen(aesKey, enc + kHeader, aad, sizeof aad, cipher, bodyLen, enc + len - kTag, body))
    return fail("authentication failed (corrupt, swapped, or a wrong key)");

  uint8_t* plain = body;
  size_t plainLen = bodyLen;
  if ((enc[1] & kFlagCompressed) && zstd) {
    unsigned long long size = ZSTD_getFrameContentSize(body, bodyLen);
    if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > kMaxPlain) return fail("decompression failed");
    uint8_t* out = static_cast<uint8_t*>(std::malloc(size > 0 ? size : 1));
    if (out == nullptr) {
      std::free(work);
      r.err = ENOMEM;
      r.syscall = "malloc";
      return r;
    }
    size_t n = ZSTD_decompress(out, size, body, bodyLen);
    std::free(work);
    work = out;
    if (ZSTD_isError(n) || n != size) return fail("decompression failed");
    plain = out;
    plainLen = size;
  }
  uint8_t check[32];
  keyedHash(keys.idKey, plain, plainLen, check);
  if (std::memcmp(check, id, 32) != 0) return fail("content does not hash to its id");
  r.owner = work;
  r.data = plain;
  r.len = plainLen;
  return r;
}

}  // namespace isg
