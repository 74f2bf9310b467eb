// A restored file in one trip to the libuv pool: open (created anew, never following a symlink),
// pwrite of its extents, ftruncate to its size, fchown, fchmod, fsetxattr, futimens (nanoseconds)
// and close. `isg restore` writes thousands of small files: with fs.promises each was eight
// round trips (open, write, truncate, chown, chmod, close, then xattrs and times by path), and
// their cost on the JS thread, not the disk, bounded its files/s.
#include "writefile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>

namespace isg {
namespace glue {
namespace {

template <typename F>
int again(F f) {
  int r;
  do r = f();
  while (r != 0 && errno == EINTR);
  return r;
}

int writeTo(int fd, const RestoredFile& f, const char** syscall) {
  int64_t end = 0;
  for (const FileWrite& w : f.writes) {
    size_t done = 0;
    while (done < w.len) {
      ssize_t n = ::pwrite(fd, w.data + done, w.len - done, static_cast<off_t>(w.offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return *syscall = "write", n == 0 ? EIO : errno;
      done += static_cast<size_t>(n);
    }
    end = std::max<int64_t>(end, w.offset + static_cast<int64_t>(w.len));
  }
  if (end != f.size && again([&] { return ::ftruncate(fd, static_cast<off_t>(f.size)); }) != 0) return *syscall = "ftruncate", errno;
  if (f.uid >= 0 && again([&] { return ::fchown(fd, static_cast<uid_t>(f.uid), static_cast<gid_t>(f.gid)); }) != 0)
    return *syscall = "fchown", errno;
  if (again([&] { return ::fchmod(fd, static_cast<mode_t>(f.mode)); }) != 0) return *syscall = "fchmod", errno;
  for (const auto& x : f.xattrs)
    if (again([&] { return ::fsetxattr(fd, x.first.c_str(), x.second.data(), x.second.size(), 0); }) != 0)
      return *syscall = "fsetxattr", errno;
  if (f.times && again([&] { return ::futimens(fd, f.ts); }) != 0) return *syscall = "futimens", errno;
  return 0;
}

void timespecOf(const Napi::Value& v, struct timespec* ts) {
  if (!v.IsBigInt()) throw Napi::TypeError::New(v.Env(), "atimeNs and mtimeNs must be bigints");
  bool lossless = false;
  int64_t ns = v.As<Napi::BigInt>().Int64Value(&lossless);
  if (!lossless) throw Napi::RangeError::New(v.Env(), "a time beyond 64 bits");
  int64_t sec = ns / 1000000000, rem = ns % 1000000000;
  if (rem < 0) rem += 1000000000, sec -= 1;
  ts->tv_sec = static_cast<time_t>(sec);
  ts->tv_nsec = static_cast<long>(rem);
}

class WriteFileWorker : public Napi::AsyncWorker {
 public:
  WriteFileWorker(Napi::Env env, Napi::Object keep)
      : Napi::AsyncWorker(env, "isgfs:writeFile"), deferred_(Napi::Promise::Deferred::New(env)), keep_(Napi::Persistent(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { err_ = writeRestoredFile(file, &syscall_); }
  void OnOK() override {
    if (err_ == 0) return deferred_.Resolve(Env().Undefined());
    deferred_.Reject(fsError(Env(), err_, syscall_, file.path).Value());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  RestoredFile file;

 private:
  Napi::Promise::Deferred deferred_;
  int err_ = 0;
  const char* syscall_ = "";
  Napi::ObjectReference keep_;
};

// writeFileAttrs(path, writes: [{data, offset}], attrs) -> Promise<void> (writeRestoredFile).
Napi::Value WriteFileAttrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsObject())
    throw Napi::TypeError::New(env, "writeFileAttrs(path: string, writes: {data, offset}[], attrs: object)");
  auto keep = Napi::Object::New(env);
  keep.Set("writes", info[1]);
  auto* w = new WriteFileWorker(env, keep);
  try {
    w->file.path = info[0].As<Napi::String>().Utf8Value();
    auto a = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a[i];
      if (!e.IsObject()) throw Napi::TypeError::New(env, "a write must be {data, offset}");
      auto o = e.As<Napi::Object>();
      size_t len;
      const uint8_t* data = bytesOf(o.Get("data"), &len, "write.data");
      w->file.writes.push_back({data, len, intValue(o.Get("offset"), "write.offset")});
    }
    parseFileAttrs(info[2].As<Napi::Object>(), &w->file);
  } catch (...) {
    delete w;
    throw;
  }
  return queue(w);
}

}  // namespace

void parseFileAttrs(const Napi::Object& o, RestoredFile* f) {
  Napi::Env env = o.Env();
  f->size = intValue(o.Get("size"), "size");
  f->mode = static_cast<int>(intValue(o.Get("mode"), "mode") & 07777);
  if (!o.Get("uid").IsUndefined()) {
    f->uid = intValue(o.Get("uid"), "uid");
    f->gid = intValue(o.Get("gid"), "gid");
  }
  Napi::Value xv = o.Get("xattrs");
  if (!xv.IsUndefined()) {
    if (!xv.IsArray()) throw Napi::TypeError::New(env, "xattrs must be an array");
    auto xs = xv.As<Napi::Array>();
    for (uint32_t i = 0; i < xs.Length(); i++) {
      Napi::Value e = xs[i];
      if (!e.IsObject() || !e.As<Napi::Object>().Get("name").IsString()) throw Napi::TypeError::New(env, "an xattr must be {name, value}");
      auto x = e.As<Napi::Object>();
      size_t len;
      const uint8_t* value = bytesOf(x.Get("value"), &len, "xattr.value");
      f->xattrs.push_back({x.Get("name").As<Napi::String>().Utf8Value(), std::vector<uint8_t>(value, value + len)});
    }
  }
  if (!o.Get("mtimeNs").IsUndefined()) {
    timespecOf(o.Get("atimeNs"), &f->ts[0]);
    timespecOf(o.Get("mtimeNs"), &f->ts[1]);
    f->times = true;
  }
}

int writeRestoredFile(const RestoredFile& f, const char** syscall) {
  int fd;
  do fd = ::open(f.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return *syscall = "open", errno;
  int err = writeTo(fd, f, syscall);
  if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno, *syscall = "close";
  return err;
}

void registerWriteFile(Napi::Env env, Napi::Object exports) { setFunctions(env, exports, {{"writeFileAttrs", WriteFileAttrs}}); }

}  // namespace glue
}  // namespace isg
