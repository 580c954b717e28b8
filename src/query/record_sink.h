// Where query results go, record by record, in output order; and the formatter that turns
// records into response bytes in chunks.
//
// A record is "ULID SP topic SP line LF" (the LF may be missing on a malformed last record).
// Formats:
//   text  the record as stored
//   json  {"ulid":"...","time":"2006-01-02T15:04:05.000Z","topic":"...","line":"..."} LF,
//         escaped as Go's encoding/json does: invalid UTF-8 becomes U+FFFD, control characters
//         and U+2028/U+2029 are \u escapes.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "query/query_params.h"

namespace oklog {

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  // One record, in output order. False asks the producer to stop (the client went away).
  virtual bool Add(std::string_view record) = 0;
  // The producer is about to wait for more records: a chance to flush what is batched.
  virtual void Idle() {}
};

// Appends one record in the given format to *out.
void AppendFormatted(std::string_view record, OutputFormat format, std::string* out);

// Formats records into chunks of at least min_chunk_bytes and hands each to emit, which may
// block (backpressure) and returns false once the consumer is gone. Idle() emits a partial
// chunk when the last emit was more than max_delay ago, so slow queries still stream.
class ChunkingSink : public RecordSink {
 public:
  using Emit = std::function<bool(std::string chunk)>;
  ChunkingSink(OutputFormat format, size_t min_chunk_bytes, std::chrono::milliseconds max_delay, Emit emit);
  bool Add(std::string_view record) override;
  void Idle() override;
  // Emits what is left. False when the consumer is gone.
  bool Flush();
  uint64_t records() const { return records_; }
  uint64_t bytes() const { return bytes_; }

 private:
  bool EmitBuffer();
  OutputFormat format_;
  size_t min_chunk_bytes_;
  std::chrono::milliseconds max_delay_;
  Emit emit_;
  std::string buf_;
  bool gone_ = false;
  uint64_t records_ = 0;
  uint64_t bytes_ = 0;
  std::chrono::steady_clock::time_point last_emit_;
};

}  // namespace oklog
