#include "query/record_sink.h"

#include "common/json.h"
#include "common/ulid.h"

namespace oklog {
void AppendFormatted(std::string_view record, OutputFormat format, std::string* out) {
  if (format == OutputFormat::kText) {
    out->append(record);
    if (record.empty() || record.back() != '\n') out->push_back('\n');
    return;
  }
  if (!record.empty() && record.back() == '\n') record.remove_suffix(1);
  std::string_view ulid = record.substr(0, Ulid::kTextSize);
  std::string_view payload = record.size() > Ulid::kTextSize ? record.substr(Ulid::kTextSize + 1) : "";
  size_t sp = payload.find(' ');
  std::string_view topic = payload.substr(0, sp);
  std::string_view line = sp == std::string_view::npos ? std::string_view() : payload.substr(sp + 1);
  out->append("{\"ulid\":\"");
  AppendJsonEscaped(ulid, out);
  out->append("\",\"time\":\"");
  if (auto u = Ulid::Parse(ulid)) out->append(FormatRfc3339Millis(u->unix_ms()));
  out->append("\",\"topic\":\"");
  AppendJsonEscaped(topic, out);
  out->append("\",\"line\":\"");
  AppendJsonEscaped(line, out);
  out->append("\"}\n");
}

ChunkingSink::ChunkingSink(OutputFormat format, size_t min_chunk_bytes, std::chrono::milliseconds max_delay,
                           Emit emit)
    : format_(format),
      min_chunk_bytes_(min_chunk_bytes),
      max_delay_(max_delay),
      emit_(std::move(emit)),
      last_emit_(std::chrono::steady_clock::now()) {
  buf_.reserve(min_chunk_bytes_ + 4096);
}

bool ChunkingSink::Add(std::string_view record) {
  if (gone_) return false;
  ++records_;
  AppendFormatted(record, format_, &buf_);
  if (buf_.size() >= min_chunk_bytes_) return EmitBuffer();
  return true;
}

void ChunkingSink::Idle() {
  if (!buf_.empty() && !gone_ && std::chrono::steady_clock::now() - last_emit_ >= max_delay_) (void)EmitBuffer();
}

bool ChunkingSink::Flush() {
  if (gone_) return false;
  if (buf_.empty()) return true;
  return EmitBuffer();
}

bool ChunkingSink::EmitBuffer() {
  bytes_ += buf_.size();
  std::string chunk;
  chunk.reserve(min_chunk_bytes_ + 4096);
  chunk.swap(buf_);
  last_emit_ = std::chrono::steady_clock::now();
  if (!emit_(std::move(chunk))) gone_ = true;
  return !gone_;
}

}  // namespace oklog
