#include "rs.h"

#include <isa-l/erasure_code.h>

#include <mutex>
#include <utility>
#include <unordered_map>

namespace isg {

// Our own GF(2^8) arithmetic (polynomial 0x11d, ISA-L's field). ISA-L's gf_mul, and so its
// gf_invert_matrix, cannot be called from an addon: the node binary exports an unrelated gf_mul
// (OpenSSL) that the dynamic linker binds first. ec_init_tables/ec_encode_data do not use it.
namespace {
struct Gf {
  uint8_t exp[512];
  uint8_t log[256];
  Gf() {
    unsigned x = 1;
    for (int i = 0; i < 255; i++) {
      exp[i] = exp[i + 255] = static_cast<uint8_t>(x);
      log[x] = static_cast<uint8_t>(i);
      x <<= 1;
      if (x & 0x100) x ^= 0x11d;
    }
    exp[510] = exp[511] = 0;
    log[0] = 0;
  }
  uint8_t mul(uint8_t a, uint8_t b) const { return a && b ? exp[log[a] + log[b]] : 0; }
  uint8_t inv(uint8_t a) const { return a ? exp[255 - log[a]] : 0; }
};
const Gf gf;

// Gauss-Jordan inversion of an n x n matrix; false if singular. `a` is destroyed.
bool invert(std::vector<uint8_t>& a, std::vector<uint8_t>& out, int n) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) out[i * n + j] = i == j;
  for (int c = 0; c < n; c++) {
    int piv = c;
    while (piv < n && a[piv * n + c] == 0) piv++;
    if (piv == n) return false;
    if (piv != c)
      for (int j = 0; j < n; j++) {
        std::swap(a[piv * n + j], a[c * n + j]);
        std::swap(out[piv * n + j], out[c * n + j]);
      }
    uint8_t f = gf.inv(a[c * n + c]);
    for (int j = 0; j < n; j++) {
      a[c * n + j] = gf.mul(a[c * n + j], f);
      out[c * n + j] = gf.mul(out[c * n + j], f);
    }
    for (int r = 0; r < n; r++) {
      uint8_t e = a[r * n + c];
      if (r == c || e == 0) continue;
      for (int j = 0; j < n; j++) {
        a[r * n + j] ^= gf.mul(e, a[c * n + j]);
        out[r * n + j] ^= gf.mul(e, out[c * n + j]);
      }
    }
  }
  return true;
}
}  // namespace

void generatorMatrix(int k, int m, uint8_t* out) {
  for (int r = 0; r < k + m; r++)
    for (int c = 0; c < k; c++)
      out[r * k + c] = r < k ? (r == c ? 1 : 0) : gf.inv(static_cast<uint8_t>(r ^ c));
}

namespace {
std::mutex cacheMutex;
std::unordered_map<std::string, std::shared_ptr<const CodingTables>> cache;
// Erasure patterns are few in practice; the bound only stops a pathological caller growing it forever.
constexpr size_t kCacheMax = 4096;

std::shared_ptr<const CodingTables> build(int k, int m, const std::vector<uint8_t>& srcIdx,
                                          const std::vector<uint8_t>& outIdx, std::string* err) {
  const int n = k + m;
  std::vector<uint8_t> g(static_cast<size_t>(n) * k);
  generatorMatrix(k, m, g.data());
  // Rows of G for the sources; its inverse maps source shards back to data shards.
  std::vector<uint8_t> b(static_cast<size_t>(k) * k), inv(static_cast<size_t>(k) * k);
  for (int r = 0; r < k; r++)
    for (int c = 0; c < k; c++) b[r * k + c] = g[srcIdx[r] * k + c];
  if (!invert(b, inv, k)) {
    *err = "singular source matrix";
    return nullptr;
  }
  const int rows = static_cast<int>(outIdx.size());
  std::vector<uint8_t> dec(static_cast<size_t>(rows) * k);
  for (int o = 0; o < rows; o++) {
    const uint8_t* grow = &g[outIdx[o] * k];
    for (int c = 0; c < k; c++) {
      uint8_t s = 0;
      for (int l = 0; l < k; l++) s ^= gf.mul(grow[l], inv[l * k + c]);
      dec[o * k + c] = s;
    }
  }
  auto t = std::make_shared<CodingTables>();
  t->k = k;
  t->rows = rows;
  t->matrix = dec;
  t->gftbls.resize(static_cast<size_t>(32) * k * rows);
  ec_init_tables(k, rows, dec.data(), t->gftbls.data());
  return t;
}
}  // namespace

namespace {
// ISA-L hands short lengths (below 16..64 bytes, by instruction set) and CPUs without SSSE3 to
// ec_encode_data_base, which calls gf_mul -- bound to node's unrelated gf_mul (see above) and
// so a crash. Those cases are computed here instead.
constexpr size_t kSimdMin = 64;

bool simdUsable() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool ok = __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.1");
  return ok;
#else
  return true;
#endif
}

void applyScalar(const CodingTables& t, size_t len, uint8_t* const* srcs, uint8_t* const* outs) {
  for (int r = 0; r < t.rows; r++) {
    uint8_t* out = outs[r];
    for (size_t x = 0; x < len; x++) {
      uint8_t s = 0;
      for (int c = 0; c < t.k; c++) s ^= gf.mul(t.matrix[r * t.k + c], srcs[c][x]);
      out[x] = s;
    }
  }
}
}  // namespace

void applyTables(const CodingTables& t, size_t len, uint8_t* const* srcs, uint8_t* const* outs) {
  if (len == 0 || t.rows == 0) return;
  if (len < kSimdMin || !simdUsable()) return applyScalar(t, len, srcs, outs);
  ec_encode_data(static_cast<int>(len), t.k, t.rows, const_cast<uint8_t*>(t.gftbls.data()),
                 const_cast<uint8_t**>(srcs), const_cast<uint8_t**>(outs));
}

std::shared_ptr<const CodingTables> codingTables(int k, int m, const std::vector<uint8_t>& srcIdx,
                                                 const std::vector<uint8_t>& outIdx, std::string* err) {
  std::string key;
  key.reserve(3 + srcIdx.size() + outIdx.size());
  key.push_back(static_cast<char>(k));
  key.push_back(static_cast<char>(m));
  key.append(srcIdx.begin(), srcIdx.end());
  key.push_back(static_cast<char>(0xff));  // never a shard index (k + m <= 255)
  key.append(outIdx.begin(), outIdx.end());
  {
    std::lock_guard<std::mutex> lock(cacheMutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  auto t = build(k, m, srcIdx, outIdx, err);
  if (!t) return nullptr;
  std::lock_guard<std::mutex> lock(cacheMutex);
  if (cache.size() >= kCacheMax) cache.clear();
  cache.emplace(key, t);
  return t;
}

}  // namespace isg
