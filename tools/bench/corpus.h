// The benchmark corpus: deterministic log-ish lines of about 100 bytes (timestamp, level,
// service, a unique request id, method, path with ids, status, numbers, a message), one
// needle line and a common message in about 10 % of lines. Same seed, same bytes.
#pragma once

#include <cstdint>
#include <string>

namespace oklog::bench {

struct CorpusSpec {
  uint64_t records = 2'000'000;
  uint64_t seed = 0x9E3779B97F4A7C15ULL;
};

// The strings the query benchmark looks for. kNeedle occurs in exactly one line; kCommon in
// about 10 % of lines (every line whose message is the rare one).
inline constexpr const char* kNeedle = "needle-7c1f00d5e4a3b2";
inline constexpr const char* kCommon = "upstream timeout";
// A regex with required literals ("method=POST /v1/orders/", "status=50") and one with no
// useful literal (character classes over the request id and numbers).
inline constexpr const char* kRegexLiteral = "method=POST /v1/orders/[0-9]+ status=50[0-9]";
inline constexpr const char* kRegexNoLiteral = "[a-f][0-9][a-f][0-9][a-f][0-9][a-f]";

struct CorpusStats {
  uint64_t records = 0;
  uint64_t bytes = 0;  // including newlines
};

// Writes spec.records lines to path. Returns false (and prints why) on an I/O error.
bool WriteCorpus(const CorpusSpec& spec, const std::string& path, CorpusStats* stats);

}  // namespace oklog::bench
