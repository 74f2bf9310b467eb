// Reed-Solomon over GF(2^8) through ISA-L: our generator matrix, cached coding tables.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace isg {

// ISA-L's expanded multiplication tables for one (sources -> outputs) coding matrix.
struct CodingTables {
  int k = 0;     // sources
  int rows = 0;  // outputs
  std::vector<uint8_t> matrix;  // rows x k coefficients
  std::vector<uint8_t> gftbls;  // 32 * k * rows, ISA-L's expanded form
};

// outs[r][0, len) = sum over c of matrix[r][c] * srcs[c][0, len).
void applyTables(const CodingTables& t, size_t len, uint8_t* const* srcs, uint8_t* const* outs);

// Systematic generator, (k + m) x k row-major: identity on top, Cauchy rows below,
// G[k + i][j] = inv((k + i) XOR j). Documented in docs/formats.md ("Erasure code").
void generatorMatrix(int k, int m, uint8_t* out);

// Tables that compute shards outIdx[] from the k shards srcIdx[] (distinct, each < k + m).
// Cached per (k, m, sources, outputs); thread-safe. Returns nullptr and sets err if the
// source rows are singular (cannot happen for a valid Cauchy code; checked anyway).
std::shared_ptr<const CodingTables> codingTables(int k, int m, const std::vector<uint8_t>& srcIdx,
                                                 const std::vector<uint8_t>& outIdx, std::string* err);

}  // namespace isg
