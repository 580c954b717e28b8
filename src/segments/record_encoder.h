// Turns a connection's raw bytes into stored records: splits at LF, stamps each line with the
// connection's next ULID and a topic, and appends `ULID SP topic SP line LF` to an output
// buffer. Bytes are kept exactly as sent (NUL, '%', CR, invalid UTF-8); only LF separates.
//
// Topic modes (OK Log master): static prefixes a fixed topic; dynamic takes the line's first
// space-separated token as the topic. A dynamic line whose first token is not a valid topic is
// kept under the static topic and counted (OK Log dropped the whole connection).
//
// A line longer than max_line_bytes is cut there: its first max_line_bytes bytes become the
// record and the rest up to the next LF is discarded and counted, so one huge line can never
// stall or exhaust an ingester. Not thread-safe: one per connection.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/ulid.h"

namespace oklog {

enum class TopicMode { kStatic, kDynamic };

// [a-zA-Z0-9][a-zA-Z0-9_-]*, at most 255 bytes.
bool ValidTopic(std::string_view topic);

struct EncoderStats {
  uint64_t records = 0;
  uint64_t truncated = 0;       // lines cut at max_line_bytes
  uint64_t dropped_bytes = 0;   // bytes discarded from cut lines
  uint64_t invalid_topics = 0;  // dynamic mode lines without a valid topic
};

class RecordEncoder {
 public:
  RecordEncoder(TopicMode mode, std::string static_topic, size_t max_line_bytes);
  // With a given ULID stream (bulk ingest: ULIDs derived from the segment id).
  RecordEncoder(TopicMode mode, std::string static_topic, size_t max_line_bytes, UlidStream ulids);
  // Consumes n bytes. Complete records are appended to *out; a partial last line is kept
  // inside the encoder until its LF arrives (or Finish). now_ms stamps this batch.
  void Feed(const char* data, size_t n, uint64_t now_ms, std::string* out);
  // At end of stream: a last line without LF is still a record (nothing the producer sent is
  // dropped). Returns true when a record was emitted.
  bool Finish(uint64_t now_ms, std::string* out);
  const EncoderStats& stats() const { return stats_; }
  // Bytes held for an incomplete line.
  size_t partial_bytes() const { return partial_.size(); }

 private:
  void Emit(const char* line, size_t n, uint64_t now_ms, std::string* out);
  TopicMode mode_;
  std::string topic_;
  size_t max_line_;
  UlidStream ulids_;
  std::string partial_;
  bool discarding_ = false;  // inside the rest of an over-long line
  EncoderStats stats_;
};

}  // namespace oklog
