// The N-API glue's shared pieces: argument readers that keep a bad call from touching memory it
// does not own, Node-shaped fs errors, and one registration function per domain (*_glue.cc),
// called by the module init in addon.cc. Production functions go on `exports`; test and
// benchmark hooks on `testing` (exported as binding.testing).
#pragma once
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace isg {
namespace glue {

inline uint8_t* bytesOf(const Napi::Value& v, size_t* len, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Uint8Array or Buffer");
  auto a = v.As<Napi::Uint8Array>();
  *len = a.ByteLength();
  return a.Data();
}

inline const uint8_t* fixedBytes(const Napi::Value& v, size_t want, const char* what) {
  size_t len;
  uint8_t* p = bytesOf(v, &len, what);
  if (len != want) throw Napi::RangeError::New(v.Env(), std::string(what) + " must be " + std::to_string(want) + " bytes");
  return p;
}

inline int64_t intValue(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < 0)
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must be a non-negative integer");
  return static_cast<int64_t>(d);
}

inline int64_t intArg(const Napi::CallbackInfo& info, size_t i, const char* what) { return intValue(info[i], what); }

// Shard indices in [0, n), each at most once.
inline std::vector<uint8_t> indexList(const Napi::Value& v, int n, const char* what) {
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

// An error shaped like Node's own fs errors: code, errno, syscall, path.
inline Napi::Error fsError(Napi::Env env, int err, const char* syscall, const std::string& file) {
  const char* code = strerrorname_np(err) ? strerrorname_np(err) : "EIO";
  auto e = Napi::Error::New(env, std::string(code) + ": " + std::strerror(err) + ", " + syscall + " '" + file + "'");
  e.Set("code", code);
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", syscall);
  e.Set("path", file);
  return e;
}

// Sets each {name, function} on `o`, the function named as it is set.
inline void setFunctions(Napi::Env env, Napi::Object o, std::initializer_list<std::pair<const char*, Napi::Function::Callback>> fns) {
  for (const auto& [name, fn] : fns) o.Set(name, Napi::Function::New(env, fn, name));
}

// Queues an async worker and returns its promise.
template <typename W>
Napi::Promise queue(W* w) {
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

void registerRs(Napi::Env env, Napi::Object exports, Napi::Object testing);  // rs_glue.cc
void registerCrc(Napi::Env env, Napi::Object exports);  // crc_glue.cc
void registerCdc(Napi::Env env, Napi::Object exports);  // cdc_glue.cc
void registerPread(Napi::Env env, Napi::Object exports);  // pread_glue.cc
void registerAead(Napi::Env env, Napi::Object exports);  // aead_glue.cc
void registerBlockfile(Napi::Env env, Napi::Object exports);  // blockfile_glue.cc
void registerLock(Napi::Env env, Napi::Object exports);  // lock_glue.cc
void registerXattr(Napi::Env env, Napi::Object exports);  // xattr_glue.cc
void registerWriteFile(Napi::Env env, Napi::Object exports);  // writefile_glue.cc

}  // namespace glue
}  // namespace isg
