// Shard checksums glue: CRC-64/XZ (ECMA-182 polynomial, reflected, init and xorout all ones)
// through ISA-L, 8 bytes little-endian; one buffer here, many segments on the libuv pool.
#include <isa-l/crc64.h>

#include "glue.h"

namespace isg {
namespace glue {
namespace {

void putLe64(uint8_t* out, uint64_t c) {
  for (int i = 0; i < 8; i++) out[i] = static_cast<uint8_t>(c >> (8 * i));
}

// crc64(data) -> Buffer[8]
Napi::Value Crc64(const Napi::CallbackInfo& info) {
  size_t len;
  uint8_t* p = bytesOf(info[0], &len, "data");
  auto b = Napi::Buffer<uint8_t>::New(info.Env(), 8);
  putLe64(b.Data(), crc64_ecma_refl(0, p, len));
  return b;
}

// CRC-64 of each `segment`-byte piece of data (the last may be shorter), 8 bytes LE each, into out.
class Crc64SegmentsWorker : public Napi::AsyncWorker {
 public:
  Crc64SegmentsWorker(Napi::Env env, const uint8_t* data, size_t len, size_t segment, uint8_t* out, Napi::Object keep)
      : Napi::AsyncWorker(env, "isgfs:crc64"), deferred_(Napi::Promise::Deferred::New(env)), data_(data), len_(len),
        segment_(segment), out_(out), keep_(Napi::Persistent(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    for (size_t at = 0, s = 0; at < len_; at += segment_, s++)
      putLe64(out_ + 8 * s, crc64_ecma_refl(0, data_ + at, len_ - at < segment_ ? len_ - at : segment_));
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
  return queue(new Crc64SegmentsWorker(info.Env(), data, len, static_cast<size_t>(segment), out, keep));
}

}  // namespace

void registerCrc(Napi::Env env, Napi::Object exports) {
  setFunctions(env, exports, {{"crc64", Crc64}, {"crc64Segments", Crc64Segments}});
}

}  // namespace glue
}  // namespace isg
