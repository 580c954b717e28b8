#include "common/duration.h"

#include <cmath>
#include <cstdio>

namespace oklog {

Result<Nanos> ParseDuration(std::string_view text) {
  std::string_view s = text;
  auto bad = [&] { return Status::InvalidArgument("invalid duration \"" + std::string(text) + "\""); };
  if (s.empty()) return bad();
  bool neg = false;
  if (s[0] == '-' || s[0] == '+') {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return Nanos(0);
  if (s.empty()) return bad();
  long double total = 0;
  while (!s.empty()) {
    size_t i = 0;
    long double v = 0;
    bool digits = false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      v = v * 10 + (s[i] - '0');
      ++i;
      digits = true;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      long double scale = 0.1L;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        v += (s[i] - '0') * scale;
        scale /= 10;
        ++i;
        digits = true;
      }
    }
    if (!digits) return bad();
    size_t u = i;
    while (u < s.size() && !(s[u] >= '0' && s[u] <= '9') && s[u] != '.') ++u;
    std::string_view unit = s.substr(i, u - i);
    long double mult;
    if (unit == "ns") mult = 1;
    else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") mult = 1e3L;
    else if (unit == "ms") mult = 1e6L;
    else if (unit == "s") mult = 1e9L;
    else if (unit == "m") mult = 60e9L;
    else if (unit == "h") mult = 3600e9L;
    else return bad();
    total += v * mult;
    if (total > 9.2e18L) return bad();
    s.remove_prefix(u);
  }
  auto ns = static_cast<int64_t>(std::llround(static_cast<double>(total)));
  return Nanos(neg ? -ns : ns);
}

std::string FormatDuration(Nanos d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string sign = ns < 0 ? "-" : "";
  uint64_t u = ns < 0 ? static_cast<uint64_t>(-ns) : static_cast<uint64_t>(ns);
  char buf[64];
  if (u < 1000) {
    std::snprintf(buf, sizeof buf, "%lluns", static_cast<unsigned long long>(u));
  } else if (u < 1000000) {
    std::snprintf(buf, sizeof buf, "%gµs", u / 1e3);
  } else if (u < 1000000000) {
    std::snprintf(buf, sizeof buf, "%gms", u / 1e6);
  } else {
    uint64_t h = u / 3600000000000ULL;
    u %= 3600000000000ULL;
    uint64_t m = u / 60000000000ULL;
    u %= 60000000000ULL;
    std::string out;
    if (h) out += std::to_string(h) + "h";
    if (h || m) out += std::to_string(m) + "m";
    std::snprintf(buf, sizeof buf, "%.9g", u / 1e9);
    out += std::string(buf) + "s";
    return sign + out;
  }
  return sign + buf;
}

}  // namespace oklog
