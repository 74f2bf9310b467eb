// FastCDC glue: the scanner of cdc.h over a whole buffer (cdcCutPoints) or a stream (CdcStream);
// sizes and masks come from src/native/fastcdc.ts, so both sides use the very same masks.
#include "cdc.h"
#include "glue.h"

namespace isg {
namespace glue {
namespace {

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

}  // namespace

void registerCdc(Napi::Env env, Napi::Object exports) {
  setFunctions(env, exports, {{"cdcCutPoints", CdcCutPoints}});
  exports.Set("CdcStream", CdcStream::Init(env));
}

}  // namespace glue
}  // namespace isg
