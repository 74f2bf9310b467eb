// AES-256-GCM into caller-given memory, through the OpenSSL that Node itself carries. Node's
// crypto.Cipheriv allocates (and the kernel zeroes) a fresh buffer for every update and the
// caller copies it out: at a 1 MiB block that costs as much as the cipher itself here. The
// OpenSSL symbols are looked up at run time (dlsym): a Node built without them exported still
// loads the addon, and isgfs then uses node:crypto (src/native/aead.ts).
#pragma once

#include <cstddef>
#include <cstdint>

namespace isg {

// True when Node's OpenSSL symbols were found; the functions below may then be called.
bool aeadAvailable();

// ciphertext (len bytes) to out, then the 16-byte tag to tagOut. False on an OpenSSL failure.
bool aes256GcmSeal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t* aad, size_t aadLen,
                   const uint8_t* plain, size_t len, uint8_t* out, uint8_t tagOut[16]);

// plaintext (len bytes) to out; false when the tag does not match (out then holds garbage).
bool aes256GcmOpen(const uint8_t key[32], const uint8_t nonce[12], const uint8_t* aad, size_t aadLen,
                   const uint8_t* cipher, size_t len, const uint8_t tag[16], uint8_t* out);

}  // namespace isg
