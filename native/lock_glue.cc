// Advisory file lock glue: flock(2) on a descriptor Node opened. Node has no flock, and a pid file
// alone cannot tell a live holder from a reused pid. The kernel drops a flock lock when the last
// descriptor of its open file description closes, so a holder killed with SIGKILL (or a reboot)
// leaves nothing behind. Only the non-blocking form: a wait would stop the JavaScript thread.
#include <sys/file.h>

#include "glue.h"

namespace isg {
namespace glue {
namespace {

// tryFlock(fd, exclusive) -> true when locked, false when another open file description holds a
// conflicting lock (EWOULDBLOCK); other errors throw as Node's fs errors.
Napi::Value TryFlock(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(intArg(info, 0, "fd"));
  bool exclusive = info[1].ToBoolean().Value();
  for (;;) {
    if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) return Napi::Boolean::New(info.Env(), true);
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    throw fsError(info.Env(), errno, "flock", "fd " + std::to_string(fd));
  }
}

// funlock(fd): releases this open file description's lock (closing the descriptor does too).
Napi::Value Funlock(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(intArg(info, 0, "fd"));
  while (::flock(fd, LOCK_UN) != 0) {
    if (errno != EINTR) throw fsError(info.Env(), errno, "flock", "fd " + std::to_string(fd));
  }
  return info.Env().Undefined();
}

}  // namespace

void registerLock(Napi::Env env, Napi::Object exports) {
  setFunctions(env, exports, {{"tryFlock", TryFlock}, {"funlock", Funlock}});
}

}  // namespace glue
}  // namespace isg
