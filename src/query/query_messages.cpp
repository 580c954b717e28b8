#include "query/query_messages.h"

#include <msgpack.hpp>

#include "common/msgpack_pack.h"

namespace oklog {
namespace {

// A request holds at most kMaxQueryTopics strings in one nested array.
const msgpack::unpack_limit kRequestLimit(/*array=*/kMaxQueryTopics, /*map=*/0, /*str=*/kMaxQueryTermBytes,
                                          /*bin=*/16, /*ext=*/0, /*depth=*/2);
const msgpack::unpack_limit kStatsLimit(/*array=*/8, /*map=*/0, /*str=*/0, /*bin=*/0, /*ext=*/0, /*depth=*/1);

void PackUlid(Packer& pk, const Ulid& u) {
  PackBin(pk, std::string_view(reinterpret_cast<const char*>(u.bytes().data()), u.bytes().size()));
}

bool ReadUlid(const msgpack::object& o, Ulid* out) {
  if (o.type != msgpack::type::BIN || o.via.bin.size != 16) return false;
  *out = Ulid::FromBytes(reinterpret_cast<const uint8_t*>(o.via.bin.ptr));
  return true;
}

// Unpacks exactly one object filling the whole body; false on trailing bytes.
bool UnpackOne(std::string_view body, const msgpack::unpack_limit& limit, msgpack::object_handle* oh) {
  size_t off = 0;
  *oh = msgpack::unpack(body.data(), body.size(), off, nullptr, nullptr, limit);
  return off == body.size();
}

bool ReadVersion(const msgpack::object* f) {
  uint64_t v = 0;
  return ReadUint(f[0], UINT32_MAX, &v) && v == kQueryMessagesVersion;
}

}  // namespace

std::string EncodeQueryRunRequest(const QueryRunRequest& r) {
  msgpack::sbuffer buf(64 + r.q.size());
  Packer pk(buf);
  pk.pack_array(8);
  pk.pack_uint32(kQueryMessagesVersion);
  pk.pack_uint8(static_cast<uint8_t>(r.kind));
  PackUlid(pk, r.from);
  PackUlid(pk, r.to);
  PackStr(pk, r.q);
  pk.pack_uint8(static_cast<uint8_t>(r.mode));
  pk.pack_array(static_cast<uint32_t>(r.topics.size()));
  for (const std::string& t : r.topics) PackStr(pk, t);
  if (r.limit) {
    pk.pack_uint64(*r.limit);
  } else {
    pk.pack_nil();
  }
  return std::string(buf.data(), buf.size());
}

Result<QueryRunRequest> DecodeQueryRunRequest(std::string_view body) {
  try {
    msgpack::object_handle oh;
    if (!UnpackOne(body, kRequestLimit, &oh)) return Status::Corruption("query.run request: trailing bytes");
    const msgpack::object& o = oh.get();
    const msgpack::object* f = Fields(o, 8);
    if (f == nullptr) return Status::Corruption("query.run request: not an array of 8");
    if (!ReadVersion(f)) return Status::Corruption("query.run request: unknown version");
    QueryRunRequest r;
    uint8_t kind = 0, mode = 0;
    if (!ReadUintAs(f[1], &kind) || kind > 1) return Status::Corruption("query.run request: kind");
    r.kind = static_cast<QueryRunKind>(kind);
    if (!ReadUlid(f[2], &r.from) || !ReadUlid(f[3], &r.to)) return Status::Corruption("query.run request: bounds");
    if (!ReadStr(f[4], kMaxQueryTermBytes, true, &r.q)) return Status::Corruption("query.run request: q");
    if (!ReadUintAs(f[5], &mode) || mode > 1) return Status::Corruption("query.run request: mode");
    r.mode = static_cast<MatchMode>(mode);
    // (An empty array's element pointer may be null: check the type, not the pointer.)
    if (f[6].type != msgpack::type::ARRAY || f[6].via.array.size > kMaxQueryTopics)
      return Status::Corruption("query.run request: topics");
    r.topics.resize(f[6].via.array.size);
    for (size_t i = 0; i < r.topics.size(); ++i)
      if (!ReadStr(f[6].via.array.ptr[i], kMaxQueryTopicBytes, false, &r.topics[i]))
        return Status::Corruption("query.run request: topic");
    if (f[7].type != msgpack::type::NIL) {
      uint64_t limit = 0;
      if (!ReadUint(f[7], UINT64_MAX, &limit)) return Status::Corruption("query.run request: limit");
      r.limit = limit;
    }
    return r;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("query.run request: ") + e.what());
  }
}

std::string EncodeQueryRunStats(const QueryRunStats& s) {
  msgpack::sbuffer buf(48);
  Packer pk(buf);
  pk.pack_array(5);
  pk.pack_uint32(kQueryMessagesVersion);
  pk.pack_uint64(s.nodes);
  pk.pack_uint64(s.segments);
  pk.pack_uint64(s.max_data_set_size);
  pk.pack_uint64(s.errors);
  return std::string(buf.data(), buf.size());
}

Result<QueryRunStats> DecodeQueryRunStats(std::string_view body) {
  try {
    msgpack::object_handle oh;
    if (!UnpackOne(body, kStatsLimit, &oh)) return Status::Corruption("query.run stats: trailing bytes");
    const msgpack::object* f = Fields(oh.get(), 5);
    if (f == nullptr) return Status::Corruption("query.run stats: not an array of 5");
    if (!ReadVersion(f)) return Status::Corruption("query.run stats: unknown version");
    QueryRunStats s;
    if (!ReadUint(f[1], UINT64_MAX, &s.nodes) || !ReadUint(f[2], UINT64_MAX, &s.segments) ||
        !ReadUint(f[3], UINT64_MAX, &s.max_data_set_size) || !ReadUint(f[4], UINT64_MAX, &s.errors))
      return Status::Corruption("query.run stats: fields");
    return s;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("query.run stats: ") + e.what());
  }
}

}  // namespace oklog
