// The newline ports' back channel: what an ingester writes to a fast or durable connection whose
// client asked for it. Producers send OK Log's newline protocol (lines, LF-terminated); a plain
// producer (nc, rsyslog, OK Log's forwarder) never asks and is never written a byte, so it may
// close its socket whenever it likes (unread bytes would make its kernel reset the connection,
// which discards what the ingester had not read yet: that is why the channel is opt-in).
//
// Grammar (version 1). Client -> server, optional, the very first bytes of the connection:
//
//   request   := "oklog-acks 1" LF             ; stripped: never stored as a record
//
// A connection whose first bytes are anything else is plain: those bytes are records, as ever.
// Server -> client, only after a request, one ASCII line per message:
//
//   channel   := hello message*
//   hello     := "oklog-durable 1" LF | "oklog-fast 1" LF   ; at once, naming the port's kind
//   message   := ack | leave
//   ack       := "ack " count LF              ; durable port only
//   count     := "0" | [1-9][0-9]{0,19}       ; decimal, fits a uint64
//   leave     := "leave" LF                   ; fast and durable
//
// ack N: the first N bytes this client sent after its request are done: their records were
//   written and fdatasync'd (or the bytes were the cut-off rest of an over-long line, which is
//   never stored). Sent after each group commit that covered some of them; N never decreases
//   and always ends at a line boundary or inside a cut-off line. A batch that fails to reach
//   the disk is never acknowledged: its connections are closed instead.
// leave: the ingester refuses producers (full disk, shedding), drains (SIGTERM) or lets an idle
//   connection go. The client should finish the line in progress, half-close, and (durable)
//   read the remaining acks until the ingester closes (after it read everything: nothing is
//   lost or sent twice), then connect elsewhere. On the fast port a FIN follows at once; on the
//   durable port the ingester keeps writing acks and closes when the client has half-closed
//   (or after 10 s). A fast connection that ends without "leave" was not handed over: what was
//   in flight may be lost. (Plain connections get the half-close alone at a hand-over.)
//
// Clients must ignore lines they do not know (later versions may add messages).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace oklog {

inline constexpr std::string_view kAckRequest = "oklog-acks 1\n";
inline constexpr std::string_view kDurableHello = "oklog-durable 1\n";
inline constexpr std::string_view kFastHello = "oklog-fast 1\n";
inline constexpr std::string_view kLeaveMessage = "leave\n";
// The longest message: "ack " + 20 digits + LF.
inline constexpr size_t kMaxAckMessageBytes = 4 + 20 + 1;

std::string EncodeAck(uint64_t count);

// Client side: splits the channel into messages. Bytes that form no known message are
// skipped; a line longer than any message is discarded (counted in skipped()).
class IngestAckParser {
 public:
  struct Message {
    enum class Kind { kDurableHello, kFastHello, kAck, kLeave };
    Kind kind;
    uint64_t count = 0;  // kAck
  };
  // Feeds bytes; messages complete so far can then be taken with Next().
  void Feed(std::string_view bytes) { buf_.append(bytes); }
  // The next complete known message, or nullopt when none is buffered.
  std::optional<Message> Next();
  uint64_t skipped() const { return skipped_; }

 private:
  std::string buf_;
  size_t pos_ = 0;
  uint64_t skipped_ = 0;
};

}  // namespace oklog
