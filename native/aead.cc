#include "aead.h"

#include <dlfcn.h>
#include <openssl/evp.h>

#include <climits>
#include <mutex>

namespace isg {
namespace {

struct Evp {
  decltype(&EVP_CIPHER_CTX_new) ctxNew;
  decltype(&EVP_CIPHER_CTX_free) ctxFree;
  decltype(&EVP_aes_256_gcm) aes256gcm;
  decltype(&EVP_CipherInit_ex) init;
  decltype(&EVP_CIPHER_CTX_ctrl) ctrl;
  decltype(&EVP_CipherUpdate) update;
  decltype(&EVP_CipherFinal_ex) final;
  bool ok = false;
};

const Evp& evp() {
  static Evp e;
  static std::once_flag once;
  std::call_once(once, [] {
    auto sym = [](const char* name) { return dlsym(RTLD_DEFAULT, name); };
    e.ctxNew = reinterpret_cast<decltype(e.ctxNew)>(sym("EVP_CIPHER_CTX_new"));
    e.ctxFree = reinterpret_cast<decltype(e.ctxFree)>(sym("EVP_CIPHER_CTX_free"));
    e.aes256gcm = reinterpret_cast<decltype(e.aes256gcm)>(sym("EVP_aes_256_gcm"));
    e.init = reinterpret_cast<decltype(e.init)>(sym("EVP_CipherInit_ex"));
    e.ctrl = reinterpret_cast<decltype(e.ctrl)>(sym("EVP_CIPHER_CTX_ctrl"));
    e.update = reinterpret_cast<decltype(e.update)>(sym("EVP_CipherUpdate"));
    e.final = reinterpret_cast<decltype(e.final)>(sym("EVP_CipherFinal_ex"));
    e.ok = e.ctxNew && e.ctxFree && e.aes256gcm && e.init && e.ctrl && e.update && e.final;
  });
  return e;
}

// One GCM pass: enc = 1 seals, 0 opens (the tag is then set before Final checks it).
bool gcm(int enc, const uint8_t* key, const uint8_t* nonce, const uint8_t* aad, size_t aadLen, const uint8_t* in,
         size_t len, uint8_t* out, uint8_t* tag) {
  const Evp& e = evp();
  if (!e.ok || aadLen > INT_MAX) return false;
  EVP_CIPHER_CTX* c = e.ctxNew();
  if (!c) return false;
  bool ok = e.init(c, e.aes256gcm(), nullptr, nullptr, nullptr, enc) == 1 &&
            e.ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
            e.init(c, nullptr, nullptr, key, nonce, enc) == 1;
  int n = 0;
  if (ok && aadLen) ok = e.update(c, nullptr, &n, aad, static_cast<int>(aadLen)) == 1;
  // Update takes an int length: large inputs go in pieces.
  for (size_t at = 0; ok && at < len;) {
    int piece = static_cast<int>(len - at > (1u << 30) ? (1u << 30) : len - at);
    ok = e.update(c, out + at, &n, in + at, piece) == 1 && n == piece;
    at += piece;
  }
  if (ok && !enc) ok = e.ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
  if (ok) ok = e.final(c, out + len, &n) == 1 && n == 0;  // GCM writes nothing at the end; Final checks the tag
  if (ok && enc) ok = e.ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
  e.ctxFree(c);
  return ok;
}

}  // namespace

bool aeadAvailable() { return evp().ok; }

bool aes256GcmSeal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t* aad, size_t aadLen,
                   const uint8_t* plain, size_t len, uint8_t* out, uint8_t tagOut[16]) {
  return gcm(1, key, nonce, aad, aadLen, plain, len, out, tagOut);
}

bool aes256GcmOpen(const uint8_t key[32], const uint8_t nonce[12], const uint8_t* aad, size_t aadLen,
                   const uint8_t* cipher, size_t len, const uint8_t tag[16], uint8_t* out) {
  return gcm(0, key, nonce, aad, aadLen, cipher, len, out, const_cast<uint8_t*>(tag));
}

}  // namespace isg
