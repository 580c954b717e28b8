// The parameters of `GET|HEAD /store/query` (OK Log's, plus topic=, limit=, format=), parsed
// from the request's decoded query string into exact ULID bounds and a match specification.
// Pure functions, any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/ulid.h"

namespace oklog {

enum class MatchMode { kSubstring, kRegex };
enum class OutputFormat { kText, kJson };
// Ascending = ULID order (the default); descending = newest first (limit=N).
enum class ScanOrder { kAscending, kDescending };

struct QueryParams {
  Ulid from;  // inclusive
  Ulid to;    // inclusive
  std::string q;
  MatchMode mode = MatchMode::kSubstring;
  std::vector<std::string> topics;  // empty: every topic
  std::optional<uint64_t> limit;    // newest N matches, newest first
  OutputFormat format = OutputFormat::kText;

  ScanOrder order() const { return limit ? ScanOrder::kDescending : ScanOrder::kAscending; }
};

// Parses the request parameters. now_ms is the wall clock used by relative bounds ("5m", "now")
// and by a missing `to`. A missing `from` is the beginning of time. Returns InvalidArgument with
// the 400 message ("parsing 'from': ...", "parsing 'limit': ...") on bad input. The regex is not
// compiled here (see Matcher::Create: "compiling regex: ...").
Result<QueryParams> ParseQueryParams(const std::multimap<std::string, std::string>& params, uint64_t now_ms);

// Which end of a millisecond a time bound means: `from` takes the smallest ULID of its
// millisecond, `to` the largest, so both ends are inclusive at millisecond resolution.
enum class BoundSide { kFrom, kTo };

// One bound: a 26-character ULID (exact), RFC3339 / RFC3339Nano with any offset, "now", or a
// Go duration meaning that long ago (sign ignored, as OK Log's CLI). InvalidArgument otherwise,
// with a message that does not name the parameter.
Result<Ulid> ParseTimeBound(std::string_view text, BoundSide side, uint64_t now_ms);

// RFC3339 / RFC3339Nano ("2006-01-02T15:04:05.999999999Z07:00", 't' and 'z' accepted too) to
// Unix milliseconds (fraction truncated). nullopt for anything else or a time before 1970.
std::optional<uint64_t> ParseRfc3339Ms(std::string_view text);
// Unix milliseconds as RFC3339 in UTC: "2006-01-02T15:04:05Z" (second precision, as OK Log's
// headers), or with milliseconds "2006-01-02T15:04:05.000Z".
std::string FormatRfc3339(uint64_t unix_ms);
std::string FormatRfc3339Millis(uint64_t unix_ms);

}  // namespace oklog
