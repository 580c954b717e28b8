#include "common/duration.h"

#include <cstdint>
#include <string>

namespace oklog {

// Go's time.ParseDuration, in integers as Go does: a float only for the fraction of one
// component, which is exact for every fraction FormatDuration prints (at most the unit's digits).
Result<Nanos> ParseDuration(std::string_view text) {
  std::string_view s = text;
  auto bad = [&] { return Status::InvalidArgument("invalid duration \"" + std::string(text) + "\""); };
  constexpr uint64_t kLimit = uint64_t{1} << 63;  // |INT64_MIN|: the magnitude of the longest duration
  if (s.empty()) return bad();
  bool neg = false;
  if (s[0] == '-' || s[0] == '+') {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return Nanos(0);
  if (s.empty()) return bad();
  auto digit = [&](size_t i) { return i < s.size() && s[i] >= '0' && s[i] <= '9'; };
  uint64_t total = 0;
  while (!s.empty()) {
    size_t i = 0;
    uint64_t v = 0;
    bool digits = false;
    for (; digit(i); ++i, digits = true) {
      if (v > kLimit / 10) return bad();
      v = v * 10 + static_cast<uint64_t>(s[i] - '0');
      if (v > kLimit) return bad();
    }
    uint64_t frac = 0;
    double scale = 1;
    if (i < s.size() && s[i] == '.') {
      bool overflow = false;
      for (++i; digit(i); ++i, digits = true) {
        if (overflow || frac > (kLimit - 9) / 10) {
          overflow = true;  // digits past what 63 bits hold add nothing a nanosecond can show
          continue;
        }
        frac = frac * 10 + static_cast<uint64_t>(s[i] - '0');
        scale *= 10;
      }
    }
    if (!digits) return bad();
    size_t u = i;
    while (u < s.size() && !(s[u] >= '0' && s[u] <= '9') && s[u] != '.') ++u;
    const std::string_view unit = s.substr(i, u - i);
    uint64_t mult;
    if (unit == "ns") mult = 1;
    else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") mult = 1000;
    else if (unit == "ms") mult = 1000000;
    else if (unit == "s") mult = 1000000000;
    else if (unit == "m") mult = 60 * uint64_t{1000000000};
    else if (unit == "h") mult = 3600 * uint64_t{1000000000};
    else return bad();
    if (v > kLimit / mult) return bad();
    v *= mult;
    if (frac > 0) {
      v += static_cast<uint64_t>(static_cast<double>(frac) * (static_cast<double>(mult) / scale));
      if (v > kLimit) return bad();
    }
    total += v;
    if (total > kLimit) return bad();
    s.remove_prefix(u);
  }
  if (neg) return Nanos(static_cast<int64_t>(uint64_t{0} - total));  // total <= 2^63: no overflow
  if (total > kLimit - 1) return bad();
  return Nanos(static_cast<int64_t>(total));
}

namespace {

// v / unit as a decimal with every digit of the remainder, trailing zeros dropped: "1.5", "2".
std::string Decimal(uint64_t v, uint64_t unit) {
  std::string out = std::to_string(v / unit);
  uint64_t rest = v % unit;
  if (rest == 0) return out;
  out += '.';
  for (uint64_t place = unit / 10; place > 0 && rest > 0; place /= 10) {
    out += static_cast<char>('0' + rest / place);
    rest %= place;
  }
  return out;
}

}  // namespace

// Exact, as Go's Duration.String(): every nanosecond shows ("1.000000001s").
std::string FormatDuration(Nanos d) {
  const int64_t ns = d.count();
  if (ns == 0) return "0s";
  const std::string sign = ns < 0 ? "-" : "";
  // The magnitude in unsigned arithmetic: -INT64_MIN does not fit an int64.
  uint64_t u = ns < 0 ? uint64_t{0} - static_cast<uint64_t>(ns) : static_cast<uint64_t>(ns);
  if (u < 1000) return sign + std::to_string(u) + "ns";
  if (u < 1000000) return sign + Decimal(u, 1000) + "\xC2\xB5s";  // "µs", as Go
  if (u < 1000000000) return sign + Decimal(u, 1000000) + "ms";
  constexpr uint64_t kHour = 3600 * uint64_t{1000000000}, kMinute = 60 * uint64_t{1000000000};
  const uint64_t h = u / kHour;
  u %= kHour;
  const uint64_t m = u / kMinute;
  u %= kMinute;
  std::string out = sign;
  if (h) out += std::to_string(h) + "h";
  if (h || m) out += std::to_string(m) + "m";
  return out + Decimal(u, 1000000000) + "s";
}

}  // namespace oklog
