#include "common/ulid.h"

#include <sys/random.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <initializer_list>
#include <random>

namespace oklog {
namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

// Decoding table: 0xFF marks an invalid character.
struct DecodeTable {
  uint8_t v[256];
  constexpr DecodeTable() : v() {
    for (auto& x : v) x = 0xFF;
    for (int i = 0; i < 32; ++i) {
      v[static_cast<uint8_t>(kAlphabet[i])] = static_cast<uint8_t>(i);
      char lower = kAlphabet[i];
      if (lower >= 'A' && lower <= 'Z') lower = static_cast<char>(lower - 'A' + 'a');
      v[static_cast<uint8_t>(lower)] = static_cast<uint8_t>(i);
    }
    for (char c : {'I', 'i', 'L', 'l'}) v[static_cast<uint8_t>(c)] = 1;
    for (char c : {'O', 'o'}) v[static_cast<uint8_t>(c)] = 0;
  }
};
constexpr DecodeTable kDecode;

// The 128-bit value as two 64-bit halves.
void ToHalves(const std::array<uint8_t, 16>& b, uint64_t* hi, uint64_t* lo) {
  *hi = 0;
  *lo = 0;
  for (int i = 0; i < 8; ++i) *hi = (*hi << 8) | b[i];
  for (int i = 8; i < 16; ++i) *lo = (*lo << 8) | b[i];
}

}  // namespace

Ulid Ulid::FromParts(uint64_t unix_ms, uint16_t entropy_hi, uint64_t entropy_lo) {
  if (unix_ms > kMaxUnixMs) unix_ms = kMaxUnixMs;  // the bytes below keep 48 bits: never wrap
  Ulid u;
  for (int i = 0; i < 6; ++i) u.b_[i] = static_cast<uint8_t>(unix_ms >> (40 - 8 * i));
  u.b_[6] = static_cast<uint8_t>(entropy_hi >> 8);
  u.b_[7] = static_cast<uint8_t>(entropy_hi);
  for (int i = 0; i < 8; ++i) u.b_[8 + i] = static_cast<uint8_t>(entropy_lo >> (56 - 8 * i));
  return u;
}

Ulid Ulid::FromBytes(const uint8_t* b16) {
  Ulid u;
  std::memcpy(u.b_.data(), b16, 16);
  return u;
}

uint64_t Ulid::unix_ms() const {
  uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = (ms << 8) | b_[i];
  return ms;
}

void Ulid::Encode(char* out) const {
  uint64_t hi, lo;
  ToHalves(b_, &hi, &lo);
  // 26 characters * 5 bits = 130 bits; the first character carries the top 3 bits.
  for (int i = 25; i >= 0; --i) {
    out[i] = kAlphabet[lo & 31];
    lo = (lo >> 5) | (hi << 59);
    hi >>= 5;
  }
}

std::string Ulid::ToString() const {
  std::string s(kTextSize, '0');
  Encode(s.data());
  return s;
}

std::optional<Ulid> Ulid::Parse(std::string_view text) {
  if (text.size() != kTextSize) return std::nullopt;
  uint8_t first = kDecode.v[static_cast<uint8_t>(text[0])];
  if (first == 0xFF || first > 7) return std::nullopt;
  uint64_t hi = 0, lo = 0;
  for (size_t i = 0; i < kTextSize; ++i) {
    uint8_t v = kDecode.v[static_cast<uint8_t>(text[i])];
    if (v == 0xFF) return std::nullopt;
    hi = (hi << 5) | (lo >> 59);
    lo = (lo << 5) | v;
  }
  Ulid u;
  for (int i = 0; i < 8; ++i) u.b_[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
  for (int i = 0; i < 8; ++i) u.b_[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  return u;
}

std::optional<Ulid> Ulid::ParseCanonical(const char* text) {
  return Parse(std::string_view(text, kTextSize));
}

UlidStream::UlidStream() {
  uint64_t r = RandomU64();
  tag_ = static_cast<uint16_t>(r >> 48);
  counter_ = (r & 0x7FFFFFFFull) << 32;
}

UlidStream::UlidStream(uint16_t tag, uint64_t counter_start) : tag_(tag), counter_(counter_start) {}

Ulid UlidStream::Next(uint64_t now_ms) {
  if (exhausted_) {
    saturated_ = true;
    return Ulid::FromParts(Ulid::kMaxUnixMs, tag_, ~uint64_t{0});
  }
  now_ms = std::min(now_ms, Ulid::kMaxUnixMs);
  if (now_ms > last_ms_) last_ms_ = now_ms;  // never step back: order beats wall-clock truth
  const Ulid u = Ulid::FromParts(last_ms_, tag_, counter_);
  Skip(1);
  return u;
}

void UlidStream::Skip(uint64_t k) {
  if (k == 0 || exhausted_) return;
  const uint64_t before = counter_;
  counter_ += k;  // modulo 2^64; k < 2^64, so it carries at most once
  if (counter_ >= before) return;
  // The counter passed 2^64-1: carry into the millisecond, which keeps the order (2^64 ULIDs
  // in one millisecond do not happen on a wall clock). At the last millisecond there is no
  // carry: every ULID of the stream has been issued.
  if (last_ms_ < Ulid::kMaxUnixMs) {
    ++last_ms_;
  } else {
    exhausted_ = true;
    if (counter_ != 0) saturated_ = true;  // the skipped run went past the last ULID
  }
}

Ulid UlidStream::NextRun(uint64_t now_ms, uint64_t n) {
  Ulid first = Next(now_ms);
  if (n > 1) Skip(n - 1);  // the same steps a stream At(first) takes
  return first;
}

bool UlidStream::RunFits(const Ulid& first, uint64_t n) {
  if (n == 0) return false;
  if (first.unix_ms() < Ulid::kMaxUnixMs) return true;  // one carry at most, into a millisecond that exists
  const auto& b = first.bytes();
  uint64_t counter = 0;
  for (int i = 8; i < 16; ++i) counter = (counter << 8) | b[i];
  return n - 1 <= ~uint64_t{0} - counter;
}

UlidStream UlidStream::At(const Ulid& first) {
  const auto& b = first.bytes();
  uint16_t tag = static_cast<uint16_t>((b[6] << 8) | b[7]);
  uint64_t counter = 0;
  for (int i = 8; i < 16; ++i) counter = (counter << 8) | b[i];
  return UlidStream(tag, counter);
}

uint64_t NowUnixMs() {
  using namespace std::chrono;
  return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

uint64_t RandomU64() {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != sizeof v) {
    std::random_device rd;
    v = (uint64_t{rd()} << 32) ^ rd();
  }
  return v;
}

}  // namespace oklog
