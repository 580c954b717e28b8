// The bodies of the segment.* RPC methods (segment_rpc.h serves them, ClusterConsumer sends
// them). Control messages are positional msgpack arrays with a version first, one Encode and one
// Decode each; decoders are bounded and never throw (malformed input is Corruption). The bulk
// payloads (a pending segment's bytes, a segment file, raw records) travel as they are, not
// wrapped: they are up to 64 MiB, the RPC already frames them, and the receiver parses them in
// place (segment_format.h and record_merge.h are their grammars).
//
//   segment.next            request  = [1, max_bytes]              uint > 0
//                           response = [1, [[id, bytes]*]]         the claimed segments, oldest
//                                                                  first; empty when none wait
//   segment.read            request  = [1, id]                     response = the segment's bytes
//   segment.commit          request  = [1, [id*]]                  response = empty
//   segment.failed          request  = [1, [id*]]                  response = empty
//   segment.replicate_file  request  = a store segment file        response = [1, records stored]
//   segment.replicate       request  = sorted, distinct records    response = [1, records stored]
//
//   id    str, a canonical ULID (26 upper-case Crockford characters: the segment's name)
//   bytes uint, the segment's size
// At most kMaxSegmentIds ids in one message.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace oklog {

inline constexpr uint32_t kSegmentMessagesVersion = 1;
inline constexpr size_t kMaxSegmentIds = 1 << 16;

struct ClaimedSegment {
  std::string id;
  uint64_t bytes = 0;
};

std::string EncodeSegmentNext(uint64_t max_bytes);
Result<uint64_t> DecodeSegmentNext(std::string_view body);
std::string EncodeClaimedSegments(const std::vector<ClaimedSegment>& claimed);
Result<std::vector<ClaimedSegment>> DecodeClaimedSegments(std::string_view body);
std::string EncodeSegmentId(std::string_view id);
Result<std::string> DecodeSegmentId(std::string_view body);
std::string EncodeSegmentIds(const std::vector<std::string>& ids);
Result<std::vector<std::string>> DecodeSegmentIds(std::string_view body);
std::string EncodeStoredRecords(uint64_t records);
Result<uint64_t> DecodeStoredRecords(std::string_view body);

}  // namespace oklog
