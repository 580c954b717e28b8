#include "gossip/wire.h"

#include <msgpack.hpp>

#include "common/msgpack_pack.h"

namespace oklog::gossip {
namespace {

struct Encoder {
  Packer& pk;
  void operator()(const Ping& m) {
    pk.pack_array(4);
    pk.pack_uint8(static_cast<uint8_t>(MsgType::kPing));
    pk.pack_uint32(m.seq);
    PackStr(pk, m.target);
    PackStr(pk, m.source);
  }
  void operator()(const PingReq& m) {
    pk.pack_array(4);
    pk.pack_uint8(static_cast<uint8_t>(MsgType::kPingReq));
    pk.pack_uint32(m.seq);
    PackStr(pk, m.target);
    PackStr(pk, m.target_addr);
  }
  void operator()(const Ack& m) {
    pk.pack_array(2);
    pk.pack_uint8(static_cast<uint8_t>(MsgType::kAck));
    pk.pack_uint32(m.seq);
  }
  void operator()(const Nack& m) {
    pk.pack_array(2);
    pk.pack_uint8(static_cast<uint8_t>(MsgType::kNack));
    pk.pack_uint32(m.seq);
  }
  void operator()(const Alive& m) {
    pk.pack_array(5);
    pk.pack_uint8(static_cast<uint8_t>(MsgType::kAlive));
    pk.pack_uint64(m.incarnation);
    PackStr(pk, m.node);
    PackStr(pk, m.addr);
    PackBin(pk, m.meta);
  }
  void operator()(const Suspect& m) { Accusation(MsgType::kSuspect, m.incarnation, m.node, m.from); }
  void operator()(const Dead& m) { Accusation(MsgType::kDead, m.incarnation, m.node, m.from); }
  void operator()(const Sync& m) {
    pk.pack_array(5);
    pk.pack_uint8(static_cast<uint8_t>(MsgType::kSync));
    pk.pack_uint8(m.flags);
    pk.pack_uint64(m.digest);
    PackStr(pk, m.source);
    if (!m.states) {
      pk.pack_nil();
      return;
    }
    pk.pack_array(static_cast<uint32_t>(m.states->size()));
    for (const SyncState& s : *m.states) {
      pk.pack_array(5);
      PackStr(pk, s.node);
      PackStr(pk, s.addr);
      pk.pack_uint64(s.incarnation);
      pk.pack_uint8(static_cast<uint8_t>(s.state));
      PackBin(pk, s.meta);
    }
  }
  void Accusation(MsgType t, Incarnation inc, const NodeName& node, const NodeName& from) {
    pk.pack_array(4);
    pk.pack_uint8(static_cast<uint8_t>(t));
    pk.pack_uint64(inc);
    PackStr(pk, node);
    PackStr(pk, from);
  }
};

bool ReadSyncState(const msgpack::object& o, SyncState* s) {
  const msgpack::object* f = Fields(o, 5);
  uint8_t state = 0;
  return f && ReadStr(f[0], kMaxNameBytes, false, &s->node) && ReadStr(f[1], kMaxAddrBytes, true, &s->addr) &&
         ReadUintAs(f[2], &s->incarnation) && ReadUintAs(f[3], &state) && state <= 3 &&
         ReadBin(f[4], kMaxMetaBytes, &s->meta) && ((s->state = static_cast<MemberState>(state)), true);
}

enum class Parsed { kOk, kUnknownType, kBad };

// Parses one message object; allowed() filters which types are legal in this context.
Parsed ReadMessage(const msgpack::object& o, Message* out) {
  const msgpack::object* f = Fields(o, 1);
  uint8_t type = 0;
  if (!f || !ReadUintAs(f[0], &type)) return Parsed::kBad;
  const uint32_t n = o.via.array.size;
  bool ok = false;
  switch (static_cast<MsgType>(type)) {
    case MsgType::kPing: {
      Ping m;
      ok = n >= 4 && ReadUintAs(f[1], &m.seq) && ReadStr(f[2], kMaxNameBytes, false, &m.target) &&
           ReadStr(f[3], kMaxNameBytes, false, &m.source);
      *out = std::move(m);
      break;
    }
    case MsgType::kPingReq: {
      PingReq m;
      ok = n >= 4 && ReadUintAs(f[1], &m.seq) && ReadStr(f[2], kMaxNameBytes, false, &m.target) &&
           ReadStr(f[3], kMaxAddrBytes, false, &m.target_addr);
      *out = std::move(m);
      break;
    }
    case MsgType::kAck: {
      Ack m;
      ok = n >= 2 && ReadUintAs(f[1], &m.seq);
      *out = m;
      break;
    }
    case MsgType::kNack: {
      Nack m;
      ok = n >= 2 && ReadUintAs(f[1], &m.seq);
      *out = m;
      break;
    }
    case MsgType::kAlive: {
      Alive m;
      ok = n >= 5 && ReadUintAs(f[1], &m.incarnation) && ReadStr(f[2], kMaxNameBytes, false, &m.node) &&
           ReadStr(f[3], kMaxAddrBytes, false, &m.addr) && ReadBin(f[4], kMaxMetaBytes, &m.meta);
      *out = std::move(m);
      break;
    }
    case MsgType::kSuspect: {
      Suspect m;
      ok = n >= 4 && ReadUintAs(f[1], &m.incarnation) && ReadStr(f[2], kMaxNameBytes, false, &m.node) &&
           ReadStr(f[3], kMaxNameBytes, false, &m.from);
      *out = std::move(m);
      break;
    }
    case MsgType::kDead: {
      Dead m;
      ok = n >= 4 && ReadUintAs(f[1], &m.incarnation) && ReadStr(f[2], kMaxNameBytes, false, &m.node) &&
           ReadStr(f[3], kMaxNameBytes, false, &m.from);
      *out = std::move(m);
      break;
    }
    case MsgType::kSync: {
      Sync m;
      ok = n >= 5 && ReadUintAs(f[1], &m.flags) && ReadUintAs(f[2], &m.digest) &&
           ReadStr(f[3], kMaxNameBytes, false, &m.source);
      if (ok && f[4].type != msgpack::type::NIL) {
        const msgpack::object& arr = f[4];
        ok = arr.type == msgpack::type::ARRAY && arr.via.array.size <= kMaxSyncMembers;
        if (ok) {
          m.states.emplace();
          m.states->resize(arr.via.array.size);
          for (uint32_t i = 0; ok && i < arr.via.array.size; ++i) ok = ReadSyncState(arr.via.array.ptr[i], &(*m.states)[i]);
        }
      }
      *out = std::move(m);
      break;
    }
    default:
      return Parsed::kUnknownType;
  }
  return ok ? Parsed::kOk : Parsed::kBad;
}

// UDP packets need only small arrays, so a forged array header cannot make the unpacker
// allocate more than a few objects; streams may carry a full member table.
const msgpack::unpack_limit kPacketLimit(/*array=*/8, /*map=*/0, /*str=*/kMaxAddrBytes, /*bin=*/kMaxMetaBytes,
                                         /*ext=*/0, /*depth=*/2);
const msgpack::unpack_limit kStreamLimit(/*array=*/kMaxSyncMembers, /*map=*/0, /*str=*/kMaxAddrBytes,
                                         /*bin=*/kMaxMetaBytes, /*ext=*/0, /*depth=*/4);

}  // namespace

uint32_t ClusterHash(std::string_view cluster_name) {
  uint32_t h = 2166136261u;
  for (unsigned char c : cluster_name) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

std::string EncodeMessage(const Message& m) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  std::visit(Encoder{pk}, m);
  return std::string(buf.data(), buf.size());
}

PacketBuilder::PacketBuilder(uint32_t cluster_hash, size_t budget_bytes) : budget_(budget_bytes) {
  buf_.reserve(256);
  buf_.push_back(static_cast<char>(kPacketMagic));
  buf_.push_back(static_cast<char>(kProtocolVersion));
  for (int shift = 24; shift >= 0; shift -= 8) buf_.push_back(static_cast<char>((cluster_hash >> shift) & 0xFF));
}

bool PacketBuilder::TryAdd(std::string_view encoded_message) {
  if (count_ >= kMaxMessagesPerPacket || encoded_message.size() > remaining()) return false;
  buf_.append(encoded_message);
  ++count_;
  return true;
}

// The one decode function for packets: msgpack-c throws on malformed input, caught here.
Result<DecodedPacket> DecodePacket(std::string_view bytes, uint32_t expected_cluster_hash) {
  if (bytes.size() < kPacketHeaderBytes + 1) return Status::Corruption("gossip packet too short");
  if (bytes.size() > kMaxPacketBytes) return Status::Corruption("gossip packet too long");
  const auto* u = reinterpret_cast<const uint8_t*>(bytes.data());
  if (u[0] != kPacketMagic) return Status::Corruption("gossip packet: bad magic");
  if (u[1] != kProtocolVersion) return Status::Corruption("gossip packet: unsupported version");
  uint32_t hash = (uint32_t{u[2]} << 24) | (uint32_t{u[3]} << 16) | (uint32_t{u[4]} << 8) | u[5];
  if (hash != expected_cluster_hash) return Status::Corruption("gossip packet: other cluster");
  DecodedPacket out;
  try {
    size_t off = kPacketHeaderBytes;
    while (off < bytes.size()) {
      if (out.messages.size() + out.unknown_skipped >= kMaxMessagesPerPacket)
        return Status::Corruption("gossip packet: too many messages");
      msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size(), off, nullptr, nullptr, kPacketLimit);
      Message m;
      switch (ReadMessage(oh.get(), &m)) {
        case Parsed::kOk:
          if (std::holds_alternative<Sync>(m)) return Status::Corruption("gossip packet: sync is stream-only");
          out.messages.push_back(std::move(m));
          break;
        case Parsed::kUnknownType: ++out.unknown_skipped; break;
        case Parsed::kBad: return Status::Corruption("gossip packet: malformed message");
      }
    }
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("gossip packet: ") + e.what());
  }
  return out;
}

Result<Message> DecodeStreamMessage(std::string_view bytes) {
  if (bytes.empty() || bytes.size() > kMaxStreamMessageBytes) return Status::Corruption("gossip stream message size");
  try {
    size_t off = 0;
    msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size(), off, nullptr, nullptr, kStreamLimit);
    if (off != bytes.size()) return Status::Corruption("gossip stream message: trailing bytes");
    Message m;
    if (ReadMessage(oh.get(), &m) != Parsed::kOk) return Status::Corruption("gossip stream message: malformed");
    if (!std::holds_alternative<Ping>(m) && !std::holds_alternative<Ack>(m) && !std::holds_alternative<Sync>(m))
      return Status::Corruption("gossip stream message: type not allowed on streams");
    return m;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("gossip stream message: ") + e.what());
  }
}

}  // namespace oklog::gossip
