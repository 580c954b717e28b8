// Framing of the cluster TCP port (DESIGN.md §4.2), shared by gossip push/pull and, later, the
// data-plane RPCs. Nothing here knows about gossip: it is separable as is.
//
//   stream   := hello frame*
//   frame    := length:u32be payload[length]          length <= kMaxFrameBytes (16 MiB)
//   hello    := msgpack [magic:str="oklog", version:uint, cluster:str, node:str]
//   envelope := msgpack [kind:uint, request_id:uint64, method_or_status, body:bin]
//       kind 0 request  (method_or_status = method name, str)
//       kind 1 response (method_or_status = status code, uint; 0 = OK)
//       kind 2 chunk, 3 end (status uint), 4 error (status uint; body = message)
//
// A receiver drops the stream when the hello does not match (magic, version, cluster), when a
// length exceeds the limit, or when an envelope does not decode. The gossip method is
// "gossip": its body is one stream message of wire.h, and so is the response body (empty
// for none).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/memory_budget.h"
#include "common/status.h"

namespace oklog::rpc {

inline constexpr size_t kMaxFrameBytes = 16u << 20;
inline constexpr size_t kFrameHeaderBytes = 4;
inline constexpr uint32_t kClusterProtocolVersion = 1;
inline constexpr std::string_view kHelloMagic = "oklog";
inline constexpr std::string_view kGossipMethod = "gossip";

// Prepends the length. The payload must be at most kMaxFrameBytes.
std::string EncodeFrame(std::string_view payload);

// Splits a byte stream into frames. Feed() appends bytes; Next() yields whole frames in order.
// With a budget (common/memory_budget.h) the bytes it buffers are charged to it, and a Feed
// that would take the budget over its limit is refused.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_frame_bytes = kMaxFrameBytes) : max_(max_frame_bytes) {}
  FrameDecoder(FrameDecoder&&) = default;
  FrameDecoder& operator=(FrameDecoder&&) = default;
  void SetBudget(MemoryBudget* budget, MemoryBudget::Use use) {
    charge_ = std::make_unique<MemoryCharge>(budget);
    use_ = use;
    charge_->Set(buf_.size());
  }
  // False (nothing appended; the stream should be closed) when the budget refused the bytes.
  [[nodiscard]] bool Feed(const char* data, size_t n) {
    if (charge_ && !charge_->TrySet(buf_.size() + n, use_)) return false;
    buf_.append(data, n);
    return true;
  }
  // True and a frame in *out when one is complete; false when more bytes are needed.
  // Returns Corruption (sticky: the stream must be closed) for an oversize length.
  Result<bool> Next(std::string* out);
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  size_t pos_ = 0;
  size_t max_;
  bool broken_ = false;
  std::unique_ptr<MemoryCharge> charge_;  // null: no budget
  MemoryBudget::Use use_ = MemoryBudget::Use::kRpcFrame;
};

struct Hello {
  uint32_t version = kClusterProtocolVersion;
  std::string cluster;
  std::string node;
};
std::string EncodeHello(const Hello& h);
// Returns Corruption when malformed or when the magic is wrong; the caller checks version and
// cluster against its own.
Result<Hello> DecodeHello(std::string_view payload);

struct Envelope {
  enum class Kind : uint8_t { kRequest = 0, kResponse = 1, kChunk = 2, kEnd = 3, kError = 4 };
  Kind kind = Kind::kRequest;
  uint64_t request_id = 0;
  std::string method;   // requests
  uint32_t status = 0;  // everything else
  std::string body;
};
std::string EncodeEnvelope(const Envelope& e);
Result<Envelope> DecodeEnvelope(std::string_view payload);

}  // namespace oklog::rpc
