#include "segments/ingest_acks.h"

#include <charconv>

namespace oklog {

static_assert(kMaxAckMessageBytes == sizeof("ack 18446744073709551615\n") - 1);

std::string EncodeAck(uint64_t count) { return "ack " + std::to_string(count) + "\n"; }

std::optional<IngestAckParser::Message> IngestAckParser::Next() {
  for (;;) {
    const size_t lf = buf_.find('\n', pos_);
    if (lf == std::string::npos) {
      buf_.erase(0, pos_);
      pos_ = 0;
      if (buf_.size() > 256) {  // no message is this long: garbage, dropped
        buf_.clear();
        ++skipped_;
      }
      return std::nullopt;
    }
    std::string_view line(buf_.data() + pos_, lf - pos_);
    pos_ = lf + 1;
    if (line == kDurableHello.substr(0, kDurableHello.size() - 1)) return Message{Message::Kind::kDurableHello};
    if (line == kFastHello.substr(0, kFastHello.size() - 1)) return Message{Message::Kind::kFastHello};
    if (line == kLeaveMessage.substr(0, kLeaveMessage.size() - 1)) return Message{Message::Kind::kLeave};
    if (line.size() > 4 && line.size() <= kMaxAckMessageBytes - 1 && line.substr(0, 4) == "ack " &&
        (line[4] != '0' || line.size() == 5)) {
      uint64_t n = 0;
      const char* b = line.data() + 4;
      const char* e = line.data() + line.size();
      auto [p, ec] = std::from_chars(b, e, n);
      if (ec == std::errc() && p == e) return Message{Message::Kind::kAck, n};
    }
    ++skipped_;
  }
}

}  // namespace oklog
