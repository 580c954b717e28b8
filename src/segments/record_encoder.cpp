#include "segments/record_encoder.h"

#include <cstring>

namespace oklog {

bool ValidTopic(std::string_view t) {
  if (t.empty() || t.size() > 255) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (!alnum(t[0])) return false;
  for (char c : t)
    if (!alnum(c) && c != '_' && c != '-') return false;
  return true;
}

RecordEncoder::RecordEncoder(TopicMode mode, std::string static_topic, size_t max_line_bytes)
    : mode_(mode), topic_(std::move(static_topic)), max_line_(max_line_bytes == 0 ? 1 : max_line_bytes) {}

RecordEncoder::RecordEncoder(TopicMode mode, std::string static_topic, size_t max_line_bytes, UlidStream ulids)
    : RecordEncoder(mode, std::move(static_topic), max_line_bytes) {
  ulids_ = ulids;
}

void RecordEncoder::Emit(const char* line, size_t n, uint64_t now_ms, std::string* out) {
  size_t old = out->size();
  bool use_static = mode_ == TopicMode::kStatic;
  if (!use_static) {
    const char* sp = static_cast<const char*>(std::memchr(line, ' ', n));
    if (!sp || !ValidTopic(std::string_view(line, static_cast<size_t>(sp - line)))) {
      use_static = true;
      ++stats_.invalid_topics;
    }
  }
  size_t extra = Ulid::kTextSize + 1 + (use_static ? topic_.size() + 1 : 0) + 1;
  out->resize(old + extra + n);
  char* p = out->data() + old;
  ulids_.Next(now_ms).Encode(p);
  p += Ulid::kTextSize;
  *p++ = ' ';
  if (use_static) {
    std::memcpy(p, topic_.data(), topic_.size());
    p += topic_.size();
    *p++ = ' ';
  }
  std::memcpy(p, line, n);
  p[n] = '\n';
  ++stats_.records;
}

void RecordEncoder::Feed(const char* data, size_t n, uint64_t now_ms, std::string* out) {
  const char* p = data;
  const char* end = data + n;
  while (p < end) {
    const char* lf = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    size_t seg_len = static_cast<size_t>((lf ? lf : end) - p);
    if (discarding_) {
      stats_.dropped_bytes += seg_len;
      if (lf) discarding_ = false;
    } else if (partial_.empty() && lf && seg_len <= max_line_) {
      Emit(p, seg_len, now_ms, out);  // the common case: no copy into partial_
    } else {
      size_t room = max_line_ - partial_.size();
      size_t take = seg_len < room ? seg_len : room;
      partial_.append(p, take);
      if (take < seg_len) {
        // Over-long: emit the cut record now, discard the rest of the line.
        ++stats_.truncated;
        stats_.dropped_bytes += seg_len - take;
        Emit(partial_.data(), partial_.size(), now_ms, out);
        partial_.clear();
        discarding_ = lf == nullptr;
      } else if (lf) {
        Emit(partial_.data(), partial_.size(), now_ms, out);
        partial_.clear();
      }
    }
    p += seg_len + (lf ? 1 : 0);
  }
}

bool RecordEncoder::Finish(uint64_t now_ms, std::string* out) {
  discarding_ = false;
  if (partial_.empty()) return false;
  Emit(partial_.data(), partial_.size(), now_ms, out);
  partial_.clear();
  return true;
}

}  // namespace oklog
