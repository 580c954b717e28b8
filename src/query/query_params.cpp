#include "query/query_params.h"

#include <charconv>
#include <cstdio>

#include "common/duration.h"
#include "query/query_messages.h"

namespace oklog {
namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned DaysInMonth(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// Reads exactly n digits at s[*pos].
bool Digits(std::string_view s, size_t* pos, size_t n, int* out) {
  if (*pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos >= s.size() || s[*pos] != c) return false;
  ++*pos;
  return true;
}

constexpr uint64_t kMaxUlidMs = (uint64_t{1} << 48) - 1;

}  // namespace

std::optional<uint64_t> ParseRfc3339Ms(std::string_view s) {
  size_t p = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!Digits(s, &p, 4, &year) || !Expect(s, &p, '-') || !Digits(s, &p, 2, &month) || !Expect(s, &p, '-') ||
      !Digits(s, &p, 2, &day))
    return std::nullopt;
  if (p >= s.size() || (s[p] != 'T' && s[p] != 't')) return std::nullopt;
  ++p;
  if (!Digits(s, &p, 2, &hour) || !Expect(s, &p, ':') || !Digits(s, &p, 2, &minute) || !Expect(s, &p, ':') ||
      !Digits(s, &p, 2, &second))
    return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || static_cast<unsigned>(day) > DaysInMonth(year, month) || hour > 23 ||
      minute > 59 || second > 59)
    return std::nullopt;
  int millis = 0;
  if (p < s.size() && s[p] == '.') {
    ++p;
    size_t digits = 0;
    while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
      if (digits < 3) millis = millis * 10 + (s[p] - '0');
      ++digits;
      ++p;
    }
    if (digits == 0) return std::nullopt;
    for (size_t i = digits; i < 3; ++i) millis *= 10;
  }
  int64_t offset_s = 0;
  if (p < s.size() && (s[p] == 'Z' || s[p] == 'z')) {
    ++p;
  } else if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
    int sign = s[p] == '-' ? -1 : 1;
    ++p;
    int oh, om;
    if (!Digits(s, &p, 2, &oh) || !Expect(s, &p, ':') || !Digits(s, &p, 2, &om) || oh > 23 || om > 59)
      return std::nullopt;
    offset_s = sign * (oh * 3600 + om * 60);
  } else {
    return std::nullopt;
  }
  if (p != s.size()) return std::nullopt;
  int64_t secs = DaysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  if (secs < 0) return std::nullopt;
  uint64_t ms = static_cast<uint64_t>(secs) * 1000 + millis;
  if (ms > kMaxUlidMs) return std::nullopt;
  return ms;
}

namespace {

std::string FormatRfc3339Impl(uint64_t unix_ms, bool with_millis) {
  int64_t secs = static_cast<int64_t>(unix_ms / 1000);
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, &y, &m, &d);
  char buf[48];
  if (with_millis) {
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<long long>(y), m, d,
                  static_cast<int>(rem / 3600), static_cast<int>(rem / 60 % 60), static_cast<int>(rem % 60),
                  static_cast<int>(unix_ms % 1000));
  } else {
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02dZ", static_cast<long long>(y), m, d,
                  static_cast<int>(rem / 3600), static_cast<int>(rem / 60 % 60), static_cast<int>(rem % 60));
  }
  return buf;
}

}  // namespace

std::string FormatRfc3339(uint64_t unix_ms) { return FormatRfc3339Impl(unix_ms, false); }
std::string FormatRfc3339Millis(uint64_t unix_ms) { return FormatRfc3339Impl(unix_ms, true); }

Result<Ulid> ParseTimeBound(std::string_view text, BoundSide side, uint64_t now_ms) {
  auto at = [side](uint64_t ms) { return side == BoundSide::kFrom ? Ulid::MinAt(ms) : Ulid::MaxAt(ms); };
  if (text.size() == Ulid::kTextSize) {
    if (auto u = Ulid::Parse(text)) return *u;
  }
  if (text == "now") return at(now_ms);
  if (auto ms = ParseRfc3339Ms(text)) return at(*ms);
  {
    auto d = ParseDuration(text);
    if (d.ok()) {
      int64_t ago_ms = std::chrono::duration_cast<Millis>(d.value()).count();
      if (ago_ms < 0) ago_ms = -ago_ms;  // "-5m" and "5m" both mean five minutes ago
      uint64_t ms = static_cast<uint64_t>(ago_ms) > now_ms ? 0 : now_ms - static_cast<uint64_t>(ago_ms);
      return at(ms);
    }
  }
  return Status::InvalidArgument("\"" + std::string(text) +
                                 "\" is not a ULID, an RFC3339 time, \"now\" or a duration like \"5m\"");
}

Result<QueryParams> ParseQueryParams(const std::multimap<std::string, std::string>& params, uint64_t now_ms) {
  auto first = [&params](const char* key) -> const std::string* {
    auto it = params.find(key);
    return it == params.end() ? nullptr : &it->second;
  };
  QueryParams out;
  out.from = Ulid::MinAt(0);
  out.to = Ulid::MaxAt(std::min(now_ms, kMaxUlidMs));
  if (const std::string* v = first("from")) {
    auto r = ParseTimeBound(*v, BoundSide::kFrom, now_ms);
    if (!r.ok()) return Status::InvalidArgument("parsing 'from': " + r.status().message());
    out.from = r.value();
  }
  if (const std::string* v = first("to")) {
    auto r = ParseTimeBound(*v, BoundSide::kTo, now_ms);
    if (!r.ok()) return Status::InvalidArgument("parsing 'to': " + r.status().message());
    out.to = r.value();
  }
  if (const std::string* v = first("q")) out.q = *v;
  // As OK Log: the presence of the key turns regex mode on, whatever its value.
  if (params.count("regex") > 0) out.mode = MatchMode::kRegex;
  // The bounds every store applies to query.run and stream.open (query_messages.h): a query past
  // them would reach each store and fail there, an error per store (206) instead of this 400.
  if (out.q.size() > kMaxQueryTermBytes)
    return Status::InvalidArgument("parsing 'q': longer than " + std::to_string(kMaxQueryTermBytes) + " bytes");
  auto [lo, hi] = params.equal_range("topic");
  for (auto it = lo; it != hi; ++it) {
    if (it->second.size() > kMaxQueryTopicBytes)
      return Status::InvalidArgument("parsing 'topic': longer than " + std::to_string(kMaxQueryTopicBytes) + " bytes");
    if (!it->second.empty()) out.topics.push_back(it->second);
  }
  if (out.topics.size() > kMaxQueryTopics)
    return Status::InvalidArgument("parsing 'topic': more than " + std::to_string(kMaxQueryTopics) + " topics");
  if (const std::string* v = first("limit")) {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
    if (v->empty() || ec != std::errc() || end != v->data() + v->size() || n == 0) {
      return Status::InvalidArgument("parsing 'limit': \"" + *v + "\" is not a positive integer");
    }
    out.limit = n;
  }
  if (const std::string* v = first("format")) {
    if (*v == "json") {
      out.format = OutputFormat::kJson;
    } else if (v->empty() || *v == "text") {
      out.format = OutputFormat::kText;
    } else {
      return Status::InvalidArgument("parsing 'format': \"" + *v + "\" is neither text nor json");
    }
  }
  return out;
}

}  // namespace oklog
