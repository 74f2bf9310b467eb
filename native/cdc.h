// FastCDC gear scanner, the native twin of the reference in src/native/fastcdc.ts (nextCut, TsCdcStream).
// State carries across pieces (hash and bytes since the last cut), so a stream is scanned once
// and no bytes are kept: a cut depends only on the bytes since the previous cut.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace isg {

struct CdcParams {
  uint64_t minSize, avgSize, maxSize;
  uint32_t maskS, maskL;  // from chunkMasks() in TS, so both sides use the very same masks
  uint32_t gear[256];
};

class CdcScanner {
 public:
  explicit CdcScanner(const CdcParams& p) : p_(p) {}

  // Appends the absolute end offsets of the chunks decided within data[0, len).
  void push(const uint8_t* data, size_t len, std::vector<double>* cuts) {
    size_t i = 0;
    while (i < len) {
      size_t avail = len - i;
      if (pos_ < p_.minSize) {  // bytes before minSize are not hashed
        uint64_t skip = p_.minSize - pos_;
        if (skip > avail) skip = avail;
        pos_ += skip;
        i += skip;
        continue;
      }
      const bool small = pos_ < p_.avgSize;
      const uint64_t room = (small ? p_.avgSize : p_.maxSize) - pos_;
      const size_t n = room < avail ? static_cast<size_t>(room) : avail;
      bool hit = false;
      const size_t used = scan(data + i, n, small ? p_.maskS : p_.maskL, &hit);
      pos_ += used;
      i += used;
      if (hit || pos_ == p_.maxSize) cut(i, cuts);
    }
    base_ += len;
  }

  // End of stream: the bytes since the last cut form the final chunk.
  void finish(std::vector<double>* cuts) {
    if (pos_ > 0) cuts->push_back(static_cast<double>(base_));
    pos_ = 0;
    fp_ = 0;
  }

 private:
  // Bytes of d[0, n) consumed up to and including the first position whose hash has no bit of
  // `mask` set (*hit), or n. Long runs use two independent chains, one per half: the gear hash
  // at a position depends only on the 32 bytes before it, so the second chain, warmed up on the
  // 32 bytes before its half, holds the exact hash. Two chains hide the latency of the serial
  // shift-add, which otherwise limits the loop to one byte per two cycles.
  size_t scan(const uint8_t* d, size_t n, uint32_t mask, bool* hit) {
    const uint32_t* g = p_.gear;
    uint32_t fa = fp_;
    size_t i = 0;
    if (n >= kDualMin) {
      const size_t half = n / 2;
      const uint8_t* b = d + half;
      uint32_t fb = 0;
      for (size_t t = half - 32; t < half; t++) fb = (fb << 1) + g[d[t]];
      size_t j = 0;
      for (; j < half; j++) {
        gearStep(fa, g[d[j]]);
        gearStep(fb, g[b[j]]);
        if (__builtin_expect((fa & mask) == 0, 0)) return found(fa, j + 1, hit);
        if (__builtin_expect((fb & mask) == 0, 0)) break;
      }
      if (j < half) {  // the second half has a cut; the first may still have an earlier one
        for (size_t t = j + 1; t < half; t++) {
          gearStep(fa, g[d[t]]);
          if ((fa & mask) == 0) return found(fa, t + 1, hit);
        }
        return found(fb, half + j + 1, hit);
      }
      fa = fb;
      i = 2 * half;
    }
    for (; i < n; i++) {
      gearStep(fa, g[d[i]]);
      if ((fa & mask) == 0) return found(fa, i + 1, hit);
    }
    fp_ = fa;
    return n;
  }

  size_t found(uint32_t fp, size_t used, bool* hit) {
    fp_ = fp;
    *hit = true;
    return used;
  }

  // fp = (fp << 1) + g as two plain adds: compilers turn the C form into a scaled LEA, which
  // takes two cycles on AMD Zen and sits on the loop-carried chain.
  static inline void gearStep(uint32_t& fp, uint32_t g) {
#if defined(__x86_64__) && defined(__GNUC__)
    __asm__("addl %0, %0\n\taddl %1, %0" : "+r"(fp) : "rm"(g));
#else
    fp = (fp << 1) + g;
#endif
  }

  static constexpr size_t kDualMin = 256;

  void cut(size_t i, std::vector<double>* cuts) {
    cuts->push_back(static_cast<double>(base_ + i));
    pos_ = 0;
    fp_ = 0;
  }

  CdcParams p_;
  uint64_t base_ = 0;  // absolute offset of the current piece
  uint64_t pos_ = 0;   // bytes of the current chunk seen so far
  uint32_t fp_ = 0;
};

}  // namespace isg
