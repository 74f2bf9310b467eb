// Ranged file reads glue: open, pread (until full or end of file) and close in one trip to the
// libuv pool: fs.promises takes four (open, fstat, read, close), and a cold read from local
// backends makes about a thousand such reads per GiB.
#include <fcntl.h>
#include <unistd.h>

#include "glue.h"

namespace isg {
namespace glue {
namespace {

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
  return queue(new PreadWorker(info.Env(), info[0].As<Napi::String>().Utf8Value(), offset, out, len, keep));
}

}  // namespace

void registerPread(Napi::Env env, Napi::Object exports) {
  setFunctions(env, exports, {{"preadFile", PreadFile}});
}

}  // namespace glue
}  // namespace isg
