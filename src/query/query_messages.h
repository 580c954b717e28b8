// The query module's RPC messages: `query.run` (a store's part of a fanned-out query) and
// `stream.open` (a peer's live-tail subscription). Each body
// is one positional msgpack array with a version first; one Encode and one Decode per message.
// Decoders are bounded and never throw: malformed input is Corruption.
//
//   query.run request = [1, kind, from, to, q, mode, topics, limit, asked]
//     kind    uint  0 = stats then records, 1 = stats only (HEAD)        (QueryRunKind)
//     from    bin16 lowest ULID, inclusive (exact: relative bounds are resolved by the caller)
//     to      bin16 highest ULID, inclusive
//     q       str   substring or RE2 pattern, ≤ kMaxQueryTermBytes
//     mode    uint  0 = substring, 1 = regex                             (MatchMode)
//     topics  [str] ≤ kMaxQueryTopics topics, each ≤ kMaxQueryTopicBytes; empty: every topic
//     limit   nil | uint  newest N matches, newest first (descending ULID order)
//     asked   [str] ≤ kMaxQueryAskedStores names: every store this fan-out asks (absent from
//             older callers: no holdings check)
//   query.run response (server-streaming):
//     part 1  = [1, nodes, segments, max_data_set_size, errors, missing_total, missing,
//                skipped_blocks, skipped_records]                      (QueryRunStats)
//       missing  [[low bin16, high bin16, records, [holder str]]] ≤ kMaxMissingReported
//                batches of the range held, as far as this store knows, only by stores not
//                asked (segments/holdings.h); missing_total counts them all
//       skipped_blocks, skipped_records  uint: bad blocks of the range this store stepped over
//                (its gaps, segments/gaps.h) that no asked store is known to hold good copies
//                of, and their records; absent from older stores (read as 0)
//     then    raw stored records "ULID SP topic SP line LF" in scan order (ascending ULID, or
//             descending with a limit), cut anywhere: the receiver splits at LF;
//     end     status OK, or the reason the scan failed (the caller counts the peer as an error).
//
//   stream.open request = [1, q, mode, topics]     (fields as in query.run)
//   stream.open response (server-streaming): batches of raw records as they are ingested, and
//     drop notices (stream_registry.h); it never ends by itself.
//
// Enum values on the wire are only ever appended to; decoders accept arrays longer than they
// know (fields a later version appends).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/ulid.h"
#include "query/matcher.h"
#include "query/query_params.h"
#include "segments/holdings.h"

namespace oklog {

inline constexpr const char* kQueryRun = "query.run";
inline constexpr const char* kStreamOpen = "stream.open";
inline constexpr uint32_t kQueryMessagesVersion = 1;
inline constexpr size_t kMaxQueryTermBytes = 64 << 10;
inline constexpr size_t kMaxQueryTopics = 1024;
inline constexpr size_t kMaxQueryTopicBytes = 256;
inline constexpr size_t kMaxQueryAskedStores = 1024;
inline constexpr size_t kMaxQueryStoreNameBytes = 256;
inline constexpr size_t kMaxMissingReported = 64;

enum class QueryRunKind : uint8_t { kRecords = 0, kStatsOnly = 1 };

struct QueryRunRequest {
  QueryRunKind kind = QueryRunKind::kRecords;
  Ulid from;
  Ulid to;
  std::string q;
  MatchMode mode = MatchMode::kSubstring;
  std::vector<std::string> topics;
  std::optional<uint64_t> limit;
  std::optional<std::vector<std::string>> asked;

  ScanOrder order() const { return limit ? ScanOrder::kDescending : ScanOrder::kAscending; }
};

struct QueryRunStats {
  uint64_t nodes = 1;
  uint64_t segments = 0;
  uint64_t max_data_set_size = 0;  // uncompressed record bytes of the segments in range
  uint64_t errors = 0;
  uint64_t missing_total = 0;
  std::vector<MissingBatch> missing;  // at most kMaxMissingReported
  uint64_t skipped_blocks = 0;
  uint64_t skipped_records = 0;
};

std::string EncodeQueryRunRequest(const QueryRunRequest& r);
Result<QueryRunRequest> DecodeQueryRunRequest(std::string_view body);
std::string EncodeQueryRunStats(const QueryRunStats& s);
Result<QueryRunStats> DecodeQueryRunStats(std::string_view body);
// The filter of a stream.open; the peer streams raw records (text) and keeps the default window.
std::string EncodeStreamOpen(const MatchSpec& match);
Result<MatchSpec> DecodeStreamOpen(std::string_view body);

}  // namespace oklog
