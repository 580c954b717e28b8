// ULIDs: 128-bit identifiers, 48-bit Unix milliseconds then 80 bits of entropy, written as 26
// Crockford base32 characters whose byte order equals time order. Every stored record starts
// with one. Thread-compatible value type.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace oklog {

class Ulid {
 public:
  static constexpr size_t kTextSize = 26;
  // The last millisecond a ULID can carry (48 bits: the year 10889).
  static constexpr uint64_t kMaxUnixMs = (uint64_t{1} << 48) - 1;

  Ulid() = default;
  // From a millisecond timestamp and 80 bits of entropy (the low 80 bits of hi16:lo64). A
  // unix_ms beyond kMaxUnixMs is clamped to it: a time never wraps to 1970.
  static Ulid FromParts(uint64_t unix_ms, uint16_t entropy_hi, uint64_t entropy_lo);
  // The smallest / largest ULID with this millisecond (clamped as above): bounds for time ranges.
  static Ulid MinAt(uint64_t unix_ms) { return FromParts(unix_ms, 0, 0); }
  static Ulid MaxAt(uint64_t unix_ms) { return FromParts(unix_ms, 0xFFFF, ~uint64_t{0}); }
  static Ulid Max() { return MaxAt(kMaxUnixMs); }
  // Parses exactly 26 characters (case-insensitive, Crockford aliases I/L->1, O->0 accepted).
  // Returns nullopt for a wrong length, a bad character, or an overflowing first character.
  static std::optional<Ulid> Parse(std::string_view text);
  // Fast path for stored records, whose ULIDs we wrote ourselves: 26 canonical characters.
  static std::optional<Ulid> ParseCanonical(const char* text);

  uint64_t unix_ms() const;
  // Writes 26 characters to out.
  void Encode(char* out) const;
  std::string ToString() const;
  const std::array<uint8_t, 16>& bytes() const { return b_; }
  static Ulid FromBytes(const uint8_t* b16);

  friend auto operator<=>(const Ulid&, const Ulid&) = default;

 private:
  std::array<uint8_t, 16> b_{};
};

// Issues ULIDs for one stream (one connection): strictly increasing even when the wall clock
// stands still or steps back, and unique across streams and nodes with overwhelming
// probability (random 16-bit stream tag + random start of a 64-bit counter, as OK Log master,
// with the tag and counter seeded from a per-process CSPRNG draw).
//
// Arithmetic never wraps. The counter carries into the millisecond; at the very end of ULID
// space (kMaxUnixMs, counter 2^64-1) there is no next ULID, and the stream saturates: it
// returns that last ULID again (not greater than the previous one) and saturated() turns
// true. A stream on the wall clock never gets there (2^63 ULIDs at least before it could);
// one started At() an id from outside (bulk ingest) must check RunFits first.
class UlidStream {
 public:
  UlidStream();  // seeded from the process entropy source
  UlidStream(uint16_t tag, uint64_t counter_start);
  // now_ms: the wall clock (beyond Ulid::kMaxUnixMs it counts as kMaxUnixMs). Returns the next
  // ULID for the stream.
  Ulid Next(uint64_t now_ms);
  // Reserves n consecutive ULIDs (n >= 1) and returns the first: a stream made with At(first)
  // and fed the same now_ms issues exactly them (bulk ingest derives record ULIDs so). O(1).
  Ulid NextRun(uint64_t now_ms, uint64_t n);
  // The stream whose first Next(first.unix_ms()) returns `first`.
  static UlidStream At(const Ulid& first);
  // Whether At(first) issues n (>= 1) strictly increasing ULIDs fed first.unix_ms(): false
  // when they would run past the last ULID (an id at or near Ulid::Max()), or n == 0.
  static bool RunFits(const Ulid& first, uint64_t n);
  // True once the stream returned a ULID that was not greater than the one before.
  bool saturated() const { return saturated_; }

 private:
  // Moves the state on by k ULIDs, as k calls of Next(last_ms_) would.
  void Skip(uint64_t k);

  uint64_t last_ms_ = 0;
  uint16_t tag_;
  uint64_t counter_;       // the next ULID's entropy_lo
  bool exhausted_ = false;  // the last ULID (kMaxUnixMs, counter 2^64-1) was issued
  bool saturated_ = false;
};

// Milliseconds since the Unix epoch from the system clock.
uint64_t NowUnixMs();
// A random 64-bit value from the OS entropy source (getrandom).
uint64_t RandomU64();

}  // namespace oklog
