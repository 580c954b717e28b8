// The gossip wire format (protocol version 1): UDP packets and the messages carried on cluster
// TCP streams. Positional msgpack arrays, never maps. Every decoder is bounded and turns
// anything malformed into Corruption; nothing reachable from peer bytes throws or asserts.
//
// Grammar (msgpack types in lower case; `[...]` is a msgpack array):
//
//   packet      := magic:u8=0x4F version:u8=1 cluster_hash:u32be message{1,kMaxMessagesPerPacket}
//                  -- at most kMaxPacketBytes in all; messages are msgpack arrays back to back
//   message     := ping | ping_req | ack | nack | alive | suspect | dead | sync
//   ping        := [0, seq:uint32, target:str, source:str]         target must be the receiver
//   ping_req    := [1, seq:uint32, target:str, target_addr:str]    probe target for me; ack or nack
//   ack         := [2, seq:uint32]
//   nack        := [3, seq:uint32]                                  helper got no ack in time
//   alive       := [4, incarnation:uint64, node:str, addr:str, meta:bin]
//   suspect     := [5, incarnation:uint64, node:str, from:str]
//   dead        := [6, incarnation:uint64, node:str, from:str]     from == node: graceful leave
//   sync        := [7, flags:uint8, digest:uint64, source:str, states:(nil | [member_state*])]
//   member_state:= [node:str, addr:str, incarnation:uint64, state:uint8 (0 alive, 1 suspect,
//                   2 dead, 3 left), meta:bin]
//
// Streams carry one message per frame (ping, ack or sync) without the packet header: the hello
// frame of the connection (frame_codec.h) has already checked magic, version and cluster name.
// Arrays may carry extra trailing fields (ignored) so later versions can append; unknown message
// types inside a packet are skipped and counted; a bad field drops the whole packet.
//
// cluster_hash := FNV-1a 32-bit of the cluster name; packets of other clusters are dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"
#include "gossip/types.h"

namespace oklog::gossip {

inline constexpr uint8_t kPacketMagic = 0x4F;
inline constexpr uint8_t kProtocolVersion = 1;
inline constexpr size_t kPacketHeaderBytes = 6;
inline constexpr size_t kMaxPacketBytes = 1400;
inline constexpr size_t kMaxMessagesPerPacket = 64;
inline constexpr size_t kMaxNameBytes = 128;
inline constexpr size_t kMaxAddrBytes = 256;
inline constexpr size_t kMaxMetaBytes = 512;
inline constexpr size_t kMaxSyncMembers = 100000;
inline constexpr size_t kMaxStreamMessageBytes = 16u << 20;  // the frame limit, DESIGN §4.2
static_assert(kMaxMetaBytes + kMaxNameBytes + kMaxAddrBytes + 32 + kPacketHeaderBytes <= kMaxPacketBytes,
              "the largest alive message must fit one packet");

enum class MsgType : uint8_t { kPing = 0, kPingReq = 1, kAck = 2, kNack = 3, kAlive = 4, kSuspect = 5, kDead = 6, kSync = 7 };

struct Ping {
  uint32_t seq = 0;
  NodeName target;
  NodeName source;
};
struct PingReq {
  uint32_t seq = 0;
  NodeName target;
  std::string target_addr;
};
struct Ack {
  uint32_t seq = 0;
};
struct Nack {
  uint32_t seq = 0;
};
struct Alive {
  Incarnation incarnation = 0;
  NodeName node;
  std::string addr;
  std::string meta;
};
struct Suspect {
  Incarnation incarnation = 0;
  NodeName node;
  NodeName from;
};
struct Dead {
  Incarnation incarnation = 0;
  NodeName node;
  NodeName from;
};
struct SyncState {
  NodeName node;
  std::string addr;
  Incarnation incarnation = 0;
  MemberState state = MemberState::kAlive;
  std::string meta;
};
// Push/pull anti-entropy (membership_sync.cpp describes the exchange).
struct Sync {
  static constexpr uint8_t kJoin = 1;   // the receiver must answer with its full state
  static constexpr uint8_t kReply = 2;  // an answer: never answered again unless kWant
  static constexpr uint8_t kWant = 4;   // (in a reply) send me your full state
  static constexpr uint8_t kFinal = 8;  // the last message of an exchange: never answered
  uint8_t flags = 0;
  uint64_t digest = 0;
  NodeName source;
  std::optional<std::vector<SyncState>> states;  // nullopt: digest only
};

using Message = std::variant<Ping, PingReq, Ack, Nack, Alive, Suspect, Dead, Sync>;

uint32_t ClusterHash(std::string_view cluster_name);

// One message, msgpack-encoded (no packet header).
std::string EncodeMessage(const Message& m);

// Packs already-encoded messages into one packet within a byte budget.
class PacketBuilder {
 public:
  PacketBuilder(uint32_t cluster_hash, size_t budget_bytes = kMaxPacketBytes);
  // Appends when it fits; returns false (and leaves the packet unchanged) otherwise.
  bool TryAdd(std::string_view encoded_message);
  size_t remaining() const { return budget_ - buf_.size(); }
  size_t count() const { return count_; }
  std::string Finish() && { return std::move(buf_); }

 private:
  std::string buf_;
  size_t budget_;
  size_t count_ = 0;
};

struct DecodedPacket {
  std::vector<Message> messages;
  size_t unknown_skipped = 0;
};
// Returns Corruption for a bad header, another cluster's hash, an oversize packet, too many
// messages, or any malformed message.
Result<DecodedPacket> DecodePacket(std::string_view bytes, uint32_t expected_cluster_hash);
// One stream message (ping, ack or sync). Returns Corruption for anything else or malformed.
Result<Message> DecodeStreamMessage(std::string_view bytes);

}  // namespace oklog::gossip
