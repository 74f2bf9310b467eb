// AES-256-GCM glue (aead.cc, through the OpenSSL this Node exports), into memory the caller gives.
#include "aead.h"
#include "glue.h"

namespace isg {
namespace glue {
namespace {

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

}  // namespace

// Called only when isg::aeadAvailable().
void registerAead(Napi::Env env, Napi::Object exports) {
  setFunctions(env, exports, {{"aesGcmSeal", AesGcmSeal}, {"aesGcmOpen", AesGcmOpen}});
}

}  // namespace glue
}  // namespace isg
