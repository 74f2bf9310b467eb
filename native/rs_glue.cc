// Reed-Solomon glue: rsApply on the libuv pool (rs.cc over ISA-L); for tests and the benchmark,
// the generator matrix, ISA-L's own Cauchy matrix and a timed ec_encode_data loop.
#include <isa-l/erasure_code.h>

#include <chrono>
#include <cstdlib>

#include "glue.h"
#include "rs.h"

namespace isg {
namespace glue {
namespace {

void checkKM(const Napi::Env& env, int64_t k, int64_t m) {
  if (k < 1 || m < 1 || k + m > 255) throw Napi::RangeError::New(env, "need k >= 1, m >= 1, k + m <= 255");
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
  checkKM(env, k, m);
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
  return queue(new RsWorker(env, static_cast<int>(k), static_cast<int>(m), std::move(srcIdx), std::move(outIdx),
                            std::move(srcs), std::move(outs), static_cast<size_t>(len), srcArr, outArr));
}

// A (k + m) x k row-major matrix from `fill`, for tests.
template <typename F>
Napi::Value matrix(const Napi::CallbackInfo& info, F fill) {
  int64_t k = intArg(info, 0, "k"), m = intArg(info, 1, "m");
  checkKM(info.Env(), k, m);
  auto b = Napi::Buffer<uint8_t>::New(info.Env(), static_cast<size_t>((k + m) * k));
  fill(static_cast<int>(k), static_cast<int>(m), b.Data());
  return b;
}

// testing.rsMatrix(k, m): the generator matrix (rs.cc), for tests and docs.
Napi::Value RsMatrix(const Napi::CallbackInfo& info) {
  return matrix(info, [](int k, int m, uint8_t* out) { isg::generatorMatrix(k, m, out); });
}

// testing.isalCauchy1(k, m): ISA-L's own gf_gen_cauchy1_matrix, so a test can show our documented matrix is the same.
Napi::Value IsalCauchy1(const Napi::CallbackInfo& info) {
  return matrix(info, [](int k, int m, uint8_t* out) { gf_gen_cauchy1_matrix(out, k + m, k); });
}

// testing.isalEncodeBench(k, m, len, iters): baseline for the benchmark, seconds for `iters`
// calls of ec_encode_data on len-byte shards (len >= 64, so ISA-L stays on its SIMD code: see
// rs.cc), timed in C, so the addon's per-call cost can be read off against it.
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

}  // namespace

void registerRs(Napi::Env env, Napi::Object exports, Napi::Object testing) {
  setFunctions(env, exports, {{"rsApply", RsApply}});
  setFunctions(env, testing, {{"rsMatrix", RsMatrix}, {"isalCauchy1", IsalCauchy1}, {"isalEncodeBench", IsalEncodeBench}});
}

}  // namespace glue
}  // namespace isg
