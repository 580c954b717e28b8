// The bulk ingest protocol (port 7653), between `oklog forward -bulk` and an ingest node.
//
//   stream   := frame*          frame := length:u32be payload[length], length <= kBulkMaxFrameBytes
//   forwarder -> ingester:  msgpack ["seg", id:str(26), lines:bin]
//   ingester -> forwarder:  msgpack ["ack", id:str(26)]   the segment is stored on N store nodes
//                           msgpack ["err", message:str]   then the ingester closes the stream
//
// A segment is a run of whole lines. Its id is the ULID of its first record; record i gets the
// id's timestamp, tag and counter + i (exactly the ULIDs a UlidStream started at the id would
// issue), so a segment resent after a lost ack gets the same ULIDs on any ingester, and the
// copies are removed as duplicates by queries and compaction. The forwarder reserves one ULID
// per line (UlidStream::NextRun) so segments never share ULIDs.
//
// The ingester refuses (an "err", then the close) a segment whose id leaves no room for its
// records' ULIDs (UlidStream::RunFits: an id at or near the maximum ULID; its records would
// otherwise wrap to 1970) or lies more than kBulkMaxIdAhead ahead of the ingester's clock (no
// clock skew explains it; its records would escape every query window and age retention). A
// forwarder takes ids from its own wall clock, so only a wrong clock or a hostile client sees
// either. Ids in the past are accepted (a resend after a long outage).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/ulid.h"

namespace oklog::rpc {

inline constexpr size_t kBulkMaxFrameBytes = 64u << 20;
inline constexpr size_t kBulkMaxSegmentBytes = kBulkMaxFrameBytes - 64;  // room for the envelope
inline constexpr std::chrono::hours kBulkMaxIdAhead{24};

struct BulkMessage {
  enum class Kind { kSegment, kAck, kError };
  Kind kind = Kind::kSegment;
  Ulid id;            // segment, ack
  std::string text;   // segment: the lines; error: the message
};

// A whole frame (length prefix included).
std::string EncodeBulkSegment(const Ulid& id, std::string_view lines);
std::string EncodeBulkAck(const Ulid& id);
std::string EncodeBulkError(std::string_view message);
// Decodes one frame's payload. Corruption for anything but one well-formed message.
Result<BulkMessage> DecodeBulkMessage(std::string_view payload);

}  // namespace oklog::rpc
