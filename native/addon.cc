// isgfs native addon: Reed-Solomon through ISA-L (async, libuv pool), CRC64 shard checksums,
// FastCDC scanning, AES-256-GCM into given memory (aead.cc), one-call ranged file reads, blocks
// decoded straight from their files (blockfile.cc). The TypeScript side (src/native/addon.ts) checks arguments and splits large
// jobs; the checks here only keep a bad call from touching memory it does not own.
#include <napi.h>

#include <isa-l/crc64.h>
#include <isa-l/erasure_code.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "aead.h"
#include "blockfile.h"
#include "cdc.h"
#include "rs.h"

namespace {

uint8_t* bytesOf(const Napi::Value& v, size_t* len, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Uint8Array or Buffer");
  auto a = v.As<Napi::Uint8Array>();
  *len = a.ByteLength();
  return a.Data();
}

int64_t intValue(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < 0)
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must be a non-negative integer");
  return static_cast<int64_t>(d);
}

int64_t intArg(const Napi::CallbackInfo& info, size_t i, const char* what) { return intValue(info[i], what); }

std::vector<uint8_t> indexList(const Napi::Value& v, int n, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an array");
  auto a = v.As<Napi::Array>();
  std::vector<uint8_t> out;
  std::vector<bool> seen(n, false);
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a[i];
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d < n) || d != static_cast<int>(d) || seen[static_cast<int>(d)])
      throw Napi::RangeError::New(v.Env(), std::string(what) + ": bad or repeated shard index");
    seen[static_cast<int>(d)] = true;
    out.push_back(static_cast<uint8_t>(d));
  }
  return out;
}

// Computes outputs (shards outIdx) from k sources (shards srcIdx) over [srcOff, srcOff + len)
// of each source into [dstOff, dstOff + len) of each output. Encoding is the case
// srcIdx = 0..k-1, outIdx = k..k+m-1. The JS arrays are held so their Buffers outlive the work.
class RsWorker : public Napi::AsyncWorker {
 public:
  RsWorker(Napi::Env env, int k, int m, std::vector<uint8_t> srcIdx, std::vector<uint8_t> outIdx,
           std::vector<uint8_t*> srcs, std::vector<uint8_t*> outs, size_t len, Napi::Object keepSrc,
           Napi::Object keepOut)
      : Napi::AsyncWorker(env, "isgfs:rs"),
        deferred_(Napi::Promise::Deferred::New(env)),
        k_(k), m_(m), srcIdx_(std::move(srcIdx)), outIdx_(std::move(outIdx)),
        srcs_(std::move(srcs)), outs_(std::move(outs)), len_(len),
        keepSrc_(Napi::Persistent(keepSrc)), keepOut_(Napi::Persistent(keepOut)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::string err;
    auto t = isg::codingTables(k_, m_, srcIdx_, outIdx_, &err);
    if (!t) return SetError(err);
    isg::applyTables(*t, len_, srcs_.data(), outs_.data());
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int k_, m_;
  std::vector<uint8_t> srcIdx_, outIdx_;
  std::vector<uint8_t*> srcs_, outs_;
  size_t len_;
  Napi::ObjectReference keepSrc_, keepOut_;
};

// rsApply(k, m, srcIdx[k], srcs[k], outIdx[], outs[], srcOff, dstOff, len) -> Promise<void>
Napi::Value RsApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t k = intArg(info, 0, "k"), m = intArg(info, 1, "m");
  if (k < 1 || m < 1 || k + m > 255) throw Napi::RangeError::New(env, "need k >= 1, m >= 1, k + m <= 255");
  const int n = static_cast<int>(k + m);
  auto srcIdx = indexList(info[2], n, "sources");
  auto outIdx = indexList(info[4], n, "outputs");
  if (srcIdx.size() != static_cast<size_t>(k)) throw Napi::RangeError::New(env, "need exactly k source shards");
  int64_t srcOff = intArg(info, 6, "srcOff"), dstOff = intArg(info, 7, "dstOff"), len = intArg(info, 8, "len");
  if (len > 0x7fffffff) throw Napi::RangeError::New(env, "len must be below 2 GiB per call");
  if (!info[3].IsArray() || !info[5].IsArray()) throw Napi::TypeError::New(env, "shards must be arrays");
  auto srcArr = info[3].As<Napi::Array>(), outArr = info[5].As<Napi::Array>();
  if (srcArr.Length() != srcIdx.size() || outArr.Length() != outIdx.size())
    throw Napi::RangeError::New(env, "shard arrays and index lists differ in length");
  std::vector<uint8_t*> srcs, outs;
  for (uint32_t i = 0; i < srcArr.Length(); i++) {
    size_t l;
    uint8_t* p = bytesOf(srcArr[i], &l, "source shard");
    if (static_cast<uint64_t>(srcOff + len) > l) throw Napi::RangeError::New(env, "source shard shorter than the range");
    srcs.push_back(p + srcOff);
  }
  for (uint32_t i = 0; i < outArr.Length(); i++) {
    size_t l;
    uint8_t* p = bytesOf(outArr[i], &l, "output shard");
    if (static_cast<uint64_t>(dstOff + len) > l) throw Napi::RangeError::New(env, "output shard shorter than the range");
    outs.push_back(p + dstOff);
  }
  auto* w = new RsWorker(env, static_cast<int>(k), static_cast<int>(m), std::move(srcIdx), std::move(outIdx),
                         std::move(srcs), std::move(outs), static_cast<size_t>(len), srcArr, outArr);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// The generator matrix, (k + m) x k row-major, for tests and docs.
Napi::Value RsMatrix(const Napi::CallbackInfo& info) {
  int64_t k = intArg(info, 0, "k"), m = intArg(info, 1, "m");
  if (k < 1 || m < 1 || k + m > 255) throw Napi::RangeError::New(info.Env(), "need k >= 1, m >= 1, k + m <= 255");
  auto b = Napi::Buffer<uint8_t>::New(info.Env(), static_cast<size_t>((k + m) * k));
  isg::generatorMatrix(static_cast<int>(k), static_cast<int>(m), b.Data());
  return b;
}

// ISA-L's own gf_gen_cauchy1_matrix, so a test can show our documented matrix is the same.
Napi::Value IsalCauchy1(const Napi::CallbackInfo& info) {
  int64_t k = intArg(info, 0, "k"), m = intArg(info, 1, "m");
  if (k < 1 || m < 1 || k + m > 255) throw Napi::RangeError::New(info.Env(), "need k >= 1, m >= 1, k + m <= 255");
  auto b = Napi::Buffer<uint8_t>::New(info.Env(), static_cast<size_t>((k + m) * k));
  gf_gen_cauchy1_matrix(b.Data(), static_cast<int>(k + m), static_cast<int>(k));
  return b;
}

// Baseline for the benchmark: seconds for `iters` calls of ec_encode_data on len-byte shards
// (len >= 64, so ISA-L stays on its SIMD code: see rs.cc),
// timed in C, so the addon's per-call cost can be read off against it.
Napi::Value IsalEncodeBench(const Napi::CallbackInfo& info) {
  int64_t k = intArg(info, 0, "k"), m = intArg(info, 1, "m"), len = intArg(info, 2, "len"), iters = intArg(info, 3, "iters");
  if (k < 1 || m < 1 || k + m > 255 || len < 64 || len > (1 << 30)) throw Napi::RangeError::New(info.Env(), "bad arguments");
  std::vector<uint8_t*> bufs(k + m);
  for (auto& b : bufs) {
    if (posix_memalign(reinterpret_cast<void**>(&b), 64, static_cast<size_t>(len)) != 0) throw Napi::Error::New(info.Env(), "out of memory");
    for (int64_t i = 0; i < len; i++) b[i] = static_cast<uint8_t>(rand());
  }
  std::vector<uint8_t> g((k + m) * k), tbl(32 * k * m);
  isg::generatorMatrix(static_cast<int>(k), static_cast<int>(m), g.data());
  ec_init_tables(static_cast<int>(k), static_cast<int>(m), g.data() + k * k, tbl.data());
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t it = 0; it < iters; it++)
    ec_encode_data(static_cast<int>(len), static_cast<int>(k), static_cast<int>(m), tbl.data(), bufs.data(), bufs.data() + k);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto b : bufs) free(b);
  return Napi::Number::New(info.Env(), s);
}

// CRC-64/XZ (ECMA-182 polynomial, reflected, init and xorout all ones), 8 bytes little-endian.
Napi::Value Crc64(const Napi::CallbackInfo& info) {
  size_t len;
  uint8_t* p = bytesOf(info[0], &len, "data");
  uint64_t c = crc64_ecma_refl(0, p, len);
  auto b = Napi::Buffer<uint8_t>::New(info.Env(), 8);
  for (int i = 0; i < 8; i++) b.Data()[i] = static_cast<uint8_t>(c >> (8 * i));
  return b;
}

const uint8_t* fixedBytes(const Napi::Value& v, size_t want, const char* what) {
  size_t len;
  uint8_t* p = bytesOf(v, &len, what);
  if (len != want) throw Napi::RangeError::New(v.Env(), std::string(what) + " must be " + std::to_string(want) + " bytes");
  return p;
}

// The arguments both AES-GCM calls share: key[32], nonce[12], aad, and the input (info[3]).
struct GcmArgs {
  const uint8_t *key, *nonce, *aad, *in;
  size_t aadLen, len;
};

GcmArgs gcmArgs(const Napi::CallbackInfo& info, const char* inName) {
  GcmArgs a;
  a.key = fixedBytes(info[0], 32, "key");
  a.nonce = fixedBytes(info[1], 12, "nonce");
  a.aad = bytesOf(info[2], &a.aadLen, "aad");
  a.in = bytesOf(info[3], &a.len, inName);
  return a;
}

// aesGcmSeal(key[32], nonce[12], aad, plain, out): ciphertext then the 16-byte tag into out.
Napi::Value AesGcmSeal(const Napi::CallbackInfo& info) {
  GcmArgs a = gcmArgs(info, "plain");
  size_t outLen;
  uint8_t* out = bytesOf(info[4], &outLen, "out");
  if (outLen < a.len + 16) throw Napi::RangeError::New(info.Env(), "out must hold the ciphertext and the tag");
  if (!isg::aes256GcmSeal(a.key, a.nonce, a.aad, a.aadLen, a.in, a.len, out, out + a.len))
    throw Napi::Error::New(info.Env(), "AES-256-GCM encryption failed");
  return info.Env().Undefined();
}

// aesGcmOpen(key[32], nonce[12], aad, cipher, tag[16], out) -> true when authentic (plaintext in out).
Napi::Value AesGcmOpen(const Napi::CallbackInfo& info) {
  GcmArgs a = gcmArgs(info, "cipher");
  const uint8_t* tag = fixedBytes(info[4], 16, "tag");
  size_t outLen;
  uint8_t* out = bytesOf(info[5], &outLen, "out");
  if (outLen < a.len) throw Napi::RangeError::New(info.Env(), "out is shorter than the ciphertext");
  return Napi::Boolean::New(info.Env(), isg::aes256GcmOpen(a.key, a.nonce, a.aad, a.aadLen, a.in, a.len, tag, out));
}

// CRC-64 of each `segment`-byte piece of data (the last may be shorter), 8 bytes LE each, into out.
class Crc64SegmentsWorker : public Napi::AsyncWorker {
 public:
  Crc64SegmentsWorker(Napi::Env env, const uint8_t* data, size_t len, size_t segment, uint8_t* out, Napi::Object keep)
      : Napi::AsyncWorker(env, "isgfs:crc64"), deferred_(Napi::Promise::Deferred::New(env)), data_(data), len_(len),
        segment_(segment), out_(out), keep_(Napi::Persistent(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    for (size_t at = 0, s = 0; at < len_; at += segment_, s++) {
      uint64_t c = crc64_ecma_refl(0, data_ + at, len_ - at < segment_ ? len_ - at : segment_);
      for (int i = 0; i < 8; i++) out_[8 * s + i] = static_cast<uint8_t>(c >> (8 * i));
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  const uint8_t* data_;
  size_t len_, segment_;
  uint8_t* out_;
  Napi::ObjectReference keep_;
};

// crc64Segments(data, segment, out) -> Promise<void>, on the libuv pool.
Napi::Value Crc64Segments(const Napi::CallbackInfo& info) {
  size_t len, outLen;
  const uint8_t* data = bytesOf(info[0], &len, "data");
  int64_t segment = intArg(info, 1, "segment");
  uint8_t* out = bytesOf(info[2], &outLen, "out");
  if (segment < 1) throw Napi::RangeError::New(info.Env(), "segment must be positive");
  if (outLen < 8 * ((len + segment - 1) / segment)) throw Napi::RangeError::New(info.Env(), "out must hold 8 bytes per segment");
  auto keep = Napi::Object::New(info.Env());
  keep.Set("data", info[0]);
  keep.Set("out", info[2]);
  auto* w = new Crc64SegmentsWorker(info.Env(), data, len, static_cast<size_t>(segment), out, keep);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// An error shaped like Node's own fs errors: code, errno, syscall, path.
Napi::Error fsError(Napi::Env env, int err, const char* syscall, const std::string& file) {
  const char* code = strerrorname_np(err) ? strerrorname_np(err) : "EIO";
  auto e = Napi::Error::New(env, std::string(code) + ": " + std::strerror(err) + ", " + syscall + " '" + file + "'");
  e.Set("code", code);
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", syscall);
  e.Set("path", file);
  return e;
}

// Reads a file's bytes from `offset` into `out` with open, pread (until full or end of file) and
// close in one trip to the libuv pool: fs.promises takes four (open, fstat, read, close), and a
// cold read from local backends makes about a thousand such reads per GiB.
class PreadWorker : public Napi::AsyncWorker {
 public:
  PreadWorker(Napi::Env env, std::string file, int64_t offset, uint8_t* out, size_t len, Napi::Object keep)
      : Napi::AsyncWorker(env, "isgfs:pread"), deferred_(Napi::Promise::Deferred::New(env)), file_(std::move(file)),
        offset_(offset), out_(out), len_(len), keep_(Napi::Persistent(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    int fd = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail("open");
    while (got_ < len_) {
      ssize_t n = ::pread(fd, out_ + got_, len_ - got_, static_cast<off_t>(offset_ + got_));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        fail("read");
        break;
      }
      if (n == 0) break;  // end of file: a short read, the caller decides
      got_ += static_cast<size_t>(n);
    }
    ::close(fd);
  }
  void OnOK() override {
    if (errno_ == 0) return deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(got_)));
    deferred_.Reject(fsError(Env(), errno_, syscall_, file_).Value());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  void fail(const char* syscall) {
    errno_ = errno;
    syscall_ = syscall;
  }
  Napi::Promise::Deferred deferred_;
  std::string file_;
  int64_t offset_;
  uint8_t* out_;
  size_t len_, got_ = 0;
  int errno_ = 0;
  const char* syscall_ = "";
  Napi::ObjectReference keep_;
};

// preadFile(path, offset, out) -> Promise<bytes read>, on the libuv pool.
Napi::Value PreadFile(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "path must be a string");
  int64_t offset = intArg(info, 1, "offset");
  size_t len;
  uint8_t* out = bytesOf(info[2], &len, "out");
  auto keep = Napi::Object::New(info.Env());
  keep.Set("out", info[2]);
  auto* w = new PreadWorker(info.Env(), info[0].As<Napi::String>().Utf8Value(), offset, out, len, keep);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// A block decoded on the libuv pool (blockfile.cc), from its file(s) or from bytes in memory;
// the plaintext is handed to JS in the memory it was decoded into.
class DecodeWorker : public Napi::AsyncWorker {
 public:
  // From files.
  DecodeWorker(Napi::Env env, const isg::BlockKeys& keys, bool zstd, const uint8_t* id, std::vector<isg::FilePart> parts)
      : DecodeWorker(env, keys, zstd, id) {
    parts_ = std::move(parts);
  }
  // From bytes, which `keep` holds until the job is done.
  DecodeWorker(Napi::Env env, const isg::BlockKeys& keys, bool zstd, const uint8_t* id, uint8_t* bytes, size_t len, Napi::Object keep)
      : DecodeWorker(env, keys, zstd, id) {
    fromBytes_ = true;
    bytes_ = bytes;
    len_ = len;
    keep_ = Napi::Persistent(keep);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    r_ = fromBytes_ ? isg::decodeBlockBytes(keys_, zstd_, bytes_, len_, id_, false) : isg::decodeBlockFile(keys_, zstd_, parts_, id_);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (r_.err != 0) return deferred_.Reject(fsError(env, r_.err, r_.syscall, r_.errPath).Value());
    if (r_.corrupt != nullptr) {
      auto e = Napi::Error::New(env, r_.corrupt);
      e.Set("code", "EIO");
      e.Set("corrupt", Napi::Boolean::New(env, true));
      return deferred_.Reject(e.Value());
    }
    void* owner = r_.owner;
    r_.owner = nullptr;
    if (r_.len == 0) {
      std::free(owner);
      return deferred_.Resolve(Napi::Buffer<uint8_t>::New(env, 0));
    }
    deferred_.Resolve(Napi::Buffer<uint8_t>::New(env, r_.data, r_.len, [](Napi::Env, uint8_t*, void* o) { std::free(o); }, owner));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  ~DecodeWorker() override { std::free(r_.owner); }

 private:
  DecodeWorker(Napi::Env env, const isg::BlockKeys& keys, bool zstd, const uint8_t* id)
      : Napi::AsyncWorker(env, "isgfs:decode"), deferred_(Napi::Promise::Deferred::New(env)), keys_(keys), zstd_(zstd) {
    std::memcpy(id_, id, 32);
  }
  Napi::Promise::Deferred deferred_;
  isg::BlockKeys keys_;
  bool zstd_;
  uint8_t id_[32];
  std::vector<isg::FilePart> parts_;
  bool fromBytes_ = false;
  uint8_t* bytes_ = nullptr;
  size_t len_ = 0;
  Napi::ObjectReference keep_;
  isg::DecodedBlock r_;
};

// new BlockDecoder(idKey[32], encKey[32], compression 'zstd' | 'none');
// decoder.decodeFile(id[32], parts) -> Promise<Buffer>: parts [{file, offset, length}] hold the
// encoded block one after the other; a part without offset and length is its whole file, and a
// part {rebuild: {k, m, shard, sources: [{shard, file, offset}]}, length} is rebuilt from k others.
// decoder.decode(id[32], encoded) -> Promise<Buffer>: the same from bytes (only read).
class BlockDecoder : public Napi::ObjectWrap<BlockDecoder> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "BlockDecoder",
                       {InstanceMethod("decodeFile", &BlockDecoder::DecodeFile), InstanceMethod("decode", &BlockDecoder::Decode)});
  }
  explicit BlockDecoder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BlockDecoder>(info) {
    std::memcpy(keys_.idKey, fixedBytes(info[0], 32, "idKey"), 32);
    std::memcpy(keys_.encKey, fixedBytes(info[1], 32, "encKey"), 32);
    if (!info[2].IsString()) throw Napi::TypeError::New(info.Env(), "compression must be a string");
    std::string c = info[2].As<Napi::String>().Utf8Value();
    if (c != "zstd" && c != "none") throw Napi::RangeError::New(info.Env(), "compression must be 'zstd' or 'none'");
    zstd_ = c == "zstd";
  }

 private:
  Napi::Value DecodeFile(const Napi::CallbackInfo& info) {
    const uint8_t* id = fixedBytes(info[0], 32, "id");
    if (!info[1].IsArray() || info[1].As<Napi::Array>().Length() == 0)
      throw Napi::TypeError::New(info.Env(), "parts must be a non-empty array");
    auto a = info[1].As<Napi::Array>();
    std::vector<isg::FilePart> parts;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a[i];
      if (!e.IsObject()) throw Napi::TypeError::New(info.Env(), "a part must be an object");
      auto o = e.As<Napi::Object>();
      Napi::Value file = o.Get("file");
      isg::FilePart p;
      if (file.IsString()) p.path = file.As<Napi::String>().Utf8Value();
      Napi::Value rebuild = o.Get("rebuild");
      if (rebuild.IsObject()) {
        // {rebuild: {k, m, shard, sources: [{shard, file, offset}]}, length}
        auto rb = rebuild.As<Napi::Object>();
        p.rebuildK = static_cast<int>(intValue(rb.Get("k"), "rebuild.k"));
        p.rebuildM = static_cast<int>(intValue(rb.Get("m"), "rebuild.m"));
        const int n = p.rebuildK + p.rebuildM;
        if (p.rebuildK < 1 || p.rebuildM < 1 || n > 255) throw Napi::RangeError::New(info.Env(), "rebuild: need k >= 1, m >= 1, k + m <= 255");
        int64_t target = intValue(rb.Get("shard"), "rebuild.shard");
        if (target >= n) throw Napi::RangeError::New(info.Env(), "rebuild.shard out of range");
        p.target = static_cast<uint8_t>(target);
        Napi::Value sv = rb.Get("sources");
        if (!sv.IsArray() || sv.As<Napi::Array>().Length() != static_cast<uint32_t>(p.rebuildK))
          throw Napi::RangeError::New(info.Env(), "rebuild.sources must list k shards");
        auto sa = sv.As<Napi::Array>();
        Napi::Array idx = Napi::Array::New(info.Env());
        for (uint32_t j = 0; j < sa.Length(); j++) {
          Napi::Value sj = sa[j];
          if (!sj.IsObject() || !sj.As<Napi::Object>().Get("file").IsString()) throw Napi::TypeError::New(info.Env(), "a rebuild source needs a file");
          auto so = sj.As<Napi::Object>();
          idx.Set(j, so.Get("shard"));
          p.srcPath.push_back(so.Get("file").As<Napi::String>().Utf8Value());
          p.srcOffset.push_back(intValue(so.Get("offset"), "source.offset"));
        }
        p.srcIdx = indexList(idx, n, "rebuild.sources");
        if (std::find(p.srcIdx.begin(), p.srcIdx.end(), p.target) != p.srcIdx.end())
          throw Napi::RangeError::New(info.Env(), "rebuild.shard is among its sources");
        p.length = intValue(o.Get("length"), "part.length");
      } else {
        if (!file.IsString()) throw Napi::TypeError::New(info.Env(), "part.file must be a string");
        if (!o.Get("length").IsUndefined()) {
          p.offset = intValue(o.Get("offset"), "part.offset");
          p.length = intValue(o.Get("length"), "part.length");
        }
      }
      parts.push_back(std::move(p));
    }
    auto* w = new DecodeWorker(info.Env(), keys_, zstd_, id, std::move(parts));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    const uint8_t* id = fixedBytes(info[0], 32, "id");
    size_t len;
    uint8_t* bytes = bytesOf(info[1], &len, "encoded");
    auto keep = Napi::Object::New(info.Env());
    keep.Set("encoded", info[1]);
    auto* w = new DecodeWorker(info.Env(), keys_, zstd_, id, bytes, len, keep);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  isg::BlockKeys keys_;
  bool zstd_ = false;
};

isg::CdcParams cdcParams(const Napi::CallbackInfo& info, size_t at) {
  isg::CdcParams p;
  p.minSize = static_cast<uint64_t>(intArg(info, at, "minSize"));
  p.avgSize = static_cast<uint64_t>(intArg(info, at + 1, "avgSize"));
  p.maxSize = static_cast<uint64_t>(intArg(info, at + 2, "maxSize"));
  p.maskS = static_cast<uint32_t>(intArg(info, at + 3, "maskS"));
  p.maskL = static_cast<uint32_t>(intArg(info, at + 4, "maskL"));
  if (!(p.minSize >= 1 && p.minSize < p.avgSize && p.avgSize < p.maxSize))
    throw Napi::RangeError::New(info.Env(), "chunker sizes must satisfy min < avg < max");
  Napi::Value g = info[at + 5];
  if (!g.IsTypedArray() || g.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      g.As<Napi::Uint32Array>().ElementLength() != 256)
    throw Napi::TypeError::New(info.Env(), "gear must be a Uint32Array of 256 entries");
  std::memcpy(p.gear, g.As<Napi::Uint32Array>().Data(), sizeof(p.gear));
  return p;
}

Napi::Value cutsToJs(Napi::Env env, const std::vector<double>& cuts) {
  auto a = Napi::Float64Array::New(env, cuts.size());
  if (!cuts.empty()) std::memcpy(a.Data(), cuts.data(), cuts.size() * sizeof(double));
  return a;
}

// cdcCutPoints(data, min, avg, max, maskS, maskL, gear) -> Float64Array of chunk ends
Napi::Value CdcCutPoints(const Napi::CallbackInfo& info) {
  size_t len;
  uint8_t* d = bytesOf(info[0], &len, "data");
  isg::CdcScanner s(cdcParams(info, 1));
  std::vector<double> cuts;
  s.push(d, len, &cuts);
  s.finish(&cuts);
  return cutsToJs(info.Env(), cuts);
}

class CdcStream : public Napi::ObjectWrap<CdcStream> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CdcStream", {InstanceMethod("push", &CdcStream::Push), InstanceMethod("finish", &CdcStream::Finish)});
  }
  explicit CdcStream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CdcStream>(info), s_(cdcParams(info, 0)) {}

 private:
  Napi::Value Push(const Napi::CallbackInfo& info) {
    size_t len;
    uint8_t* d = bytesOf(info[0], &len, "piece");
    cuts_.clear();
    s_.push(d, len, &cuts_);
    return cutsToJs(info.Env(), cuts_);
  }
  Napi::Value Finish(const Napi::CallbackInfo& info) {
    cuts_.clear();
    s_.finish(&cuts_);
    return cutsToJs(info.Env(), cuts_);
  }
  isg::CdcScanner s_;
  std::vector<double> cuts_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("rsApply", Napi::Function::New(env, RsApply, "rsApply"));
  exports.Set("rsMatrix", Napi::Function::New(env, RsMatrix, "rsMatrix"));
  exports.Set("isalCauchy1", Napi::Function::New(env, IsalCauchy1, "isalCauchy1"));
  exports.Set("isalEncodeBench", Napi::Function::New(env, IsalEncodeBench, "isalEncodeBench"));
  exports.Set("crc64", Napi::Function::New(env, Crc64, "crc64"));
  exports.Set("crc64Segments", Napi::Function::New(env, Crc64Segments, "crc64Segments"));
  exports.Set("cdcCutPoints", Napi::Function::New(env, CdcCutPoints, "cdcCutPoints"));
  exports.Set("preadFile", Napi::Function::New(env, PreadFile, "preadFile"));
  exports.Set("CdcStream", CdcStream::Init(env));
  if (isg::aeadAvailable()) {  // absent when this Node does not export its OpenSSL
    exports.Set("aesGcmSeal", Napi::Function::New(env, AesGcmSeal, "aesGcmSeal"));
    exports.Set("aesGcmOpen", Napi::Function::New(env, AesGcmOpen, "aesGcmOpen"));
    exports.Set("BlockDecoder", BlockDecoder::Init(env));
  }
  return exports;
}

}  // namespace

NODE_API_MODULE(isgfs_native, Init)
