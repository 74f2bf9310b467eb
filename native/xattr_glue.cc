// Attributes Node cannot set: lsetxattr(2), and utimensat(2) with nanoseconds (Node's utimes
// take seconds as a double: about a quarter of a microsecond at today's times). `isg restore`
// sets what a tree entry records on the file, directory or symlink it makes, never following a
// symlink. Synchronous: one short syscall each, from a command, never a FUSE handler.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "glue.h"

namespace isg {
namespace glue {
namespace {

// lsetxattr(path, name, value): name a string, value a Uint8Array; errors throw as Node's fs errors.
Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsTypedArray())
    throw Napi::TypeError::New(info.Env(), "lsetxattr(path: string, name: string, value: Uint8Array)");
  std::string file = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  auto value = info[2].As<Napi::Uint8Array>();
  for (;;) {
    if (::lsetxattr(file.c_str(), name.c_str(), value.Data(), value.ByteLength(), 0) == 0) return info.Env().Undefined();
    if (errno == EINTR) continue;
    throw fsError(info.Env(), errno, "lsetxattr", file);
  }
}

// lutimesNs(path, atimeNs, mtimeNs): BigInt nanoseconds since the epoch; a symlink's own times.
Napi::Value LutimesNs(const Napi::CallbackInfo& info) {
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsBigInt() || !info[2].IsBigInt())
    throw Napi::TypeError::New(info.Env(), "lutimesNs(path: string, atimeNs: bigint, mtimeNs: bigint)");
  std::string file = info[0].As<Napi::String>().Utf8Value();
  struct timespec ts[2];
  for (int i = 0; i < 2; i++) {
    bool lossless = false;
    int64_t ns = info[1 + i].As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(info.Env(), "lutimesNs: a time beyond 64 bits");
    int64_t sec = ns / 1000000000, rem = ns % 1000000000;
    if (rem < 0) rem += 1000000000, sec -= 1;
    ts[i].tv_sec = static_cast<time_t>(sec);
    ts[i].tv_nsec = static_cast<long>(rem);
  }
  if (::utimensat(AT_FDCWD, file.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) throw fsError(info.Env(), errno, "utimensat", file);
  return info.Env().Undefined();
}

}  // namespace

void registerXattr(Napi::Env env, Napi::Object exports) {
  setFunctions(env, exports, {{"lsetxattr", Lsetxattr}, {"lutimesNs", LutimesNs}});
}

}  // namespace glue
}  // namespace isg
