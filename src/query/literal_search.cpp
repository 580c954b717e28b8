#include "query/literal_search.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace oklog {
namespace {

// Rough frequency of each byte in log text, per mille, from JSON and plain-text logs (English
// words, identifiers, numbers, timestamps). Only the order matters: it picks the probe bytes.
// A wrong guess costs speed (more candidates to check), never a match.
constexpr std::array<uint8_t, 256> MakeFrequencies() {
  std::array<uint8_t, 256> f{};
  for (auto& x : f) x = 1;  // controls, non-ASCII, rare punctuation
  for (int b = 'A'; b <= 'Z'; ++b) f[b] = 4;
  constexpr const char* kLower = "etaoinsrldchumpfgwybvkxjqz";
  constexpr uint8_t kLowerFreq[] = {60, 50, 45, 40, 40, 40, 40, 40, 25, 25, 20, 20, 20,
                                    20, 15, 10, 10, 8,  8,  8,  8,  6,  3,  2,  1,  1};
  for (int i = 0; kLower[i] != '\0'; ++i) f[static_cast<uint8_t>(kLower[i])] = kLowerFreq[i];
  constexpr uint8_t kDigitFreq[] = {50, 42, 32, 18, 18, 18, 18, 18, 18, 18};
  for (int d = 0; d < 10; ++d) f['0' + d] = kDigitFreq[d];
  f[' '] = 120;
  f['"'] = 120;
  f[':'] = 45;
  f[','] = 35;
  f['.'] = 20;
  f['/'] = 14;
  f['_'] = 14;
  f['-'] = 10;
  f['='] = 10;
  for (char c : {'{', '}', '[', ']', '(', ')', '\'', '\n', '\t'}) f[static_cast<uint8_t>(c)] = 4;
  return f;
}
constexpr std::array<uint8_t, 256> kFrequency = MakeFrequencies();

const char* FindMemmem(const char* begin, const char* end, const char* n, size_t len) {
  return static_cast<const char*>(memmem(begin, static_cast<size_t>(end - begin), n, len));
}

#if defined(__x86_64__)
// For a candidate start k the loads cover p[k + a] and p[k + b] (a, b < len); a match needs
// k + len <= end, so candidates are < tail = end - (len - 1) and a step of W candidates needs
// tail - p >= W. What is left (fewer than W candidates) goes to memmem.
__attribute__((target("avx2"))) const char* FindAvx2(const char* p, const char* end, const char* n, size_t len,
                                                      size_t a, size_t b) {
  const __m256i va = _mm256_set1_epi8(n[a]);
  const __m256i vb = _mm256_set1_epi8(n[b]);
  const char* tail = end - (len - 1);
  while (tail - p >= 64) {
    const __m256i a0 = _mm256_cmpeq_epi8(va, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + a)));
    const __m256i b0 = _mm256_cmpeq_epi8(vb, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + b)));
    const __m256i a1 = _mm256_cmpeq_epi8(va, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 + a)));
    const __m256i b1 = _mm256_cmpeq_epi8(vb, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 + b)));
    uint64_t m = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_and_si256(a0, b0))) |
                 (uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_and_si256(a1, b1)))} << 32);
    while (m != 0) {
      const char* at = p + __builtin_ctzll(m);
      if (std::memcmp(at, n, len) == 0) return at;
      m &= m - 1;
    }
    p += 64;
  }
  return FindMemmem(p, end, n, len);
}

const char* FindSse2(const char* p, const char* end, const char* n, size_t len, size_t a, size_t b) {
  const __m128i va = _mm_set1_epi8(n[a]);
  const __m128i vb = _mm_set1_epi8(n[b]);
  const char* tail = end - (len - 1);
  while (tail - p >= 16) {
    const __m128i ma = _mm_cmpeq_epi8(va, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + a)));
    const __m128i mb = _mm_cmpeq_epi8(vb, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + b)));
    uint32_t m = static_cast<uint32_t>(_mm_movemask_epi8(_mm_and_si128(ma, mb)));
    while (m != 0) {
      const char* at = p + __builtin_ctz(m);
      if (std::memcmp(at, n, len) == 0) return at;
      m &= m - 1;
    }
    p += 16;
  }
  return FindMemmem(p, end, n, len);
}

bool DetectAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}
const bool kHasAvx2 = DetectAvx2();
#endif

}  // namespace

LiteralSearcher::LiteralSearcher(std::string_view needle) : needle_(needle) {
  if (needle_.size() < 2) return;
  // The rarest byte, then the rarest at another offset; ties go to the earliest offset for the
  // first probe and to the one farthest from it for the second (distant bytes are less
  // correlated than neighbours).
  auto freq = [&](size_t i) { return kFrequency[static_cast<uint8_t>(needle_[i])]; };
  probe1_ = 0;
  for (size_t i = 1; i < needle_.size(); ++i)
    if (freq(i) < freq(probe1_)) probe1_ = i;
  auto distance = [&](size_t i) { return i > probe1_ ? i - probe1_ : probe1_ - i; };
  probe2_ = probe1_ == 0 ? 1 : 0;
  for (size_t i = 0; i < needle_.size(); ++i) {
    if (i == probe1_) continue;
    if (freq(i) < freq(probe2_) || (freq(i) == freq(probe2_) && distance(i) > distance(probe2_))) probe2_ = i;
  }
}

const char* LiteralSearcher::Find(const char* begin, const char* end) const {
#if defined(__x86_64__)
  const size_t len = needle_.size();
  if (kHasAvx2 && len >= 2 && end - begin >= static_cast<std::ptrdiff_t>(len))
    return FindAvx2(begin, end, needle_.data(), len, probe1_, probe2_);
#endif
  return FindBaseline(begin, end);
}

const char* LiteralSearcher::FindBaseline(const char* begin, const char* end) const {
  const size_t len = needle_.size();
  if (len == 0) return begin;
  if (end - begin < static_cast<std::ptrdiff_t>(len)) return nullptr;
  if (len == 1) return static_cast<const char*>(std::memchr(begin, needle_[0], static_cast<size_t>(end - begin)));
#if defined(__x86_64__)
  return FindSse2(begin, end, needle_.data(), len, probe1_, probe2_);
#else
  return FindMemmem(begin, end, needle_.data(), len);
#endif
}

}  // namespace oklog
