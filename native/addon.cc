// isgfs native addon: module init only. Each domain's glue (arguments in, results and errors
// out) is in its own file: rs_glue.cc (Reed-Solomon through ISA-L, on the libuv pool),
// crc_glue.cc (CRC64 shard checksums), cdc_glue.cc (FastCDC scanning), pread_glue.cc (one-call
// ranged file reads), aead_glue.cc (AES-256-GCM into given memory), blockfile_glue.cc (blocks
// decoded straight from their files) lock_glue.cc (flock(2), the repository's write lock) and xattr_glue.cc (lsetxattr(2) and utimensat(2) in nanoseconds, for isg restore). The TypeScript side (src/native/addon.ts, type Binding)
// checks arguments and splits large jobs; the checks in the glue only keep a bad call from
// touching memory it does not own. Test and benchmark hooks are under `testing`, apart from
// what isgfs itself calls.
#include "aead.h"
#include "glue.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Object testing = Napi::Object::New(env);
  isg::glue::registerRs(env, exports, testing);
  isg::glue::registerCrc(env, exports);
  isg::glue::registerCdc(env, exports);
  isg::glue::registerPread(env, exports);
  isg::glue::registerLock(env, exports);
  isg::glue::registerXattr(env, exports);
  isg::glue::registerWriteFile(env, exports);
  if (isg::aeadAvailable()) {  // absent when this Node does not export its OpenSSL
    isg::glue::registerAead(env, exports);
    isg::glue::registerBlockfile(env, exports);
  }
  exports.Set("testing", testing);
  return exports;
}

}  // namespace

NODE_API_MODULE(isgfs_native, Init)
