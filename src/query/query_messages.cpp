#include "query/query_messages.h"

#include <msgpack.hpp>

#include <algorithm>

#include "common/msgpack_pack.h"

namespace oklog {
namespace {

// A request holds at most kMaxQueryTopics strings in one nested array.
const msgpack::unpack_limit kRequestLimit(/*array=*/kMaxQueryTopics, /*map=*/0, /*str=*/kMaxQueryTermBytes,
                                          /*bin=*/16, /*ext=*/0, /*depth=*/2);
const msgpack::unpack_limit kStatsLimit(/*array=*/kMaxMissingReported, /*map=*/0, /*str=*/kMaxQueryStoreNameBytes,
                                        /*bin=*/16, /*ext=*/0, /*depth=*/4);

void PackFilter(Packer& pk, const std::string& q, MatchMode mode, const std::vector<std::string>& topics) {
  PackStr(pk, q);
  pk.pack_uint8(static_cast<uint8_t>(mode));
  pk.pack_array(static_cast<uint32_t>(topics.size()));
  for (const std::string& t : topics) PackStr(pk, t);
}

// q, mode, topics from f[0..2]; the reason on failure.
const char* ReadFilter(const msgpack::object* f, std::string* q, MatchMode* mode, std::vector<std::string>* topics) {
  uint8_t m = 0;
  if (!ReadStr(f[0], kMaxQueryTermBytes, true, q)) return "q";
  if (!ReadUintAs(f[1], &m) || m > 1) return "mode";
  *mode = static_cast<MatchMode>(m);
  // (An empty array's element pointer may be null: check the type, not the pointer.)
  if (f[2].type != msgpack::type::ARRAY || f[2].via.array.size > kMaxQueryTopics) return "topics";
  topics->resize(f[2].via.array.size);
  for (size_t i = 0; i < topics->size(); ++i)
    if (!ReadStr(f[2].via.array.ptr[i], kMaxQueryTopicBytes, false, &(*topics)[i])) return "topic";
  return nullptr;
}


}  // namespace

std::string EncodeQueryRunRequest(const QueryRunRequest& r) {
  msgpack::sbuffer buf(64 + r.q.size());
  Packer pk(buf);
  pk.pack_array(r.asked ? 9 : 8);
  pk.pack_uint32(kQueryMessagesVersion);
  pk.pack_uint8(static_cast<uint8_t>(r.kind));
  PackUlid(pk, r.from);
  PackUlid(pk, r.to);
  PackFilter(pk, r.q, r.mode, r.topics);
  if (r.limit) {
    pk.pack_uint64(*r.limit);
  } else {
    pk.pack_nil();
  }
  if (r.asked) {
    pk.pack_array(static_cast<uint32_t>(r.asked->size()));
    for (const std::string& a : *r.asked) PackStr(pk, a);
  }
  return std::string(buf.data(), buf.size());
}

Result<QueryRunRequest> DecodeQueryRunRequest(std::string_view body) {
  try {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(OpenVersioned(body, kRequestLimit, 8, kQueryMessagesVersion, "query.run request", &oh, &f));
    QueryRunRequest r;
    uint8_t kind = 0;
    if (!ReadUintAs(f[1], &kind) || kind > 1) return Status::Corruption("query.run request: kind");
    r.kind = static_cast<QueryRunKind>(kind);
    if (!ReadUlid(f[2], &r.from) || !ReadUlid(f[3], &r.to)) return Status::Corruption("query.run request: bounds");
    if (const char* bad = ReadFilter(f + 4, &r.q, &r.mode, &r.topics))
      return Status::Corruption(std::string("query.run request: ") + bad);
    if (f[7].type != msgpack::type::NIL) {
      uint64_t limit = 0;
      if (!ReadUint(f[7], UINT64_MAX, &limit)) return Status::Corruption("query.run request: limit");
      r.limit = limit;
    }
    if (oh.get().via.array.size > 8) {
      const msgpack::object& a = f[8];
      if (a.type != msgpack::type::ARRAY || a.via.array.size > kMaxQueryAskedStores)
        return Status::Corruption("query.run request: asked");
      r.asked.emplace(a.via.array.size);
      for (size_t i = 0; i < r.asked->size(); ++i)
        if (!ReadStr(a.via.array.ptr[i], kMaxQueryStoreNameBytes, false, &(*r.asked)[i]))
          return Status::Corruption("query.run request: asked store");
    }
    return r;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("query.run request: ") + e.what());
  }
}

std::string EncodeQueryRunStats(const QueryRunStats& s) {
  msgpack::sbuffer buf(48);
  Packer pk(buf);
  pk.pack_array(9);
  pk.pack_uint32(kQueryMessagesVersion);
  pk.pack_uint64(s.nodes);
  pk.pack_uint64(s.segments);
  pk.pack_uint64(s.max_data_set_size);
  pk.pack_uint64(s.errors);
  pk.pack_uint64(s.missing_total);
  const size_t n = std::min(s.missing.size(), kMaxMissingReported);
  pk.pack_array(static_cast<uint32_t>(n));
  for (size_t i = 0; i < n; ++i) {
    const MissingBatch& m = s.missing[i];
    pk.pack_array(4);
    PackUlid(pk, m.batch.low);
    PackUlid(pk, m.batch.high);
    pk.pack_uint64(m.records);
    const size_t h = std::min(m.holders.size(), kMaxMissingReported);
    pk.pack_array(static_cast<uint32_t>(h));
    for (size_t j = 0; j < h; ++j) PackStr(pk, m.holders[j].substr(0, kMaxQueryStoreNameBytes));
  }
  pk.pack_uint64(s.skipped_blocks);
  pk.pack_uint64(s.skipped_records);
  return std::string(buf.data(), buf.size());
}

Result<QueryRunStats> DecodeQueryRunStats(std::string_view body) {
  try {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(OpenVersioned(body, kStatsLimit, 5, kQueryMessagesVersion, "query.run stats", &oh, &f));
    QueryRunStats s;
    if (!ReadUint(f[1], UINT64_MAX, &s.nodes) || !ReadUint(f[2], UINT64_MAX, &s.segments) ||
        !ReadUint(f[3], UINT64_MAX, &s.max_data_set_size) || !ReadUint(f[4], UINT64_MAX, &s.errors))
      return Status::Corruption("query.run stats: fields");
    if (oh.get().via.array.size > 6) {
      if (!ReadUint(f[5], UINT64_MAX, &s.missing_total) || f[6].type != msgpack::type::ARRAY)
        return Status::Corruption("query.run stats: missing");
      s.missing.resize(f[6].via.array.size);
      for (size_t i = 0; i < s.missing.size(); ++i) {
        const msgpack::object* e = Fields(f[6].via.array.ptr[i], 4);
        MissingBatch& m = s.missing[i];
        if (e == nullptr || !ReadUlid(e[0], &m.batch.low) || !ReadUlid(e[1], &m.batch.high) ||
            !ReadUint(e[2], UINT64_MAX, &m.records) || e[3].type != msgpack::type::ARRAY)
          return Status::Corruption("query.run stats: missing batch");
        m.holders.resize(e[3].via.array.size);
        for (size_t j = 0; j < m.holders.size(); ++j)
          if (!ReadStr(e[3].via.array.ptr[j], kMaxQueryStoreNameBytes, false, &m.holders[j]))
            return Status::Corruption("query.run stats: missing batch holder");
      }
    }
    if (oh.get().via.array.size > 8 &&
        (!ReadUint(f[7], UINT64_MAX, &s.skipped_blocks) || !ReadUint(f[8], UINT64_MAX, &s.skipped_records)))
      return Status::Corruption("query.run stats: skipped blocks");
    return s;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("query.run stats: ") + e.what());
  }
}

std::string EncodeStreamOpen(const MatchSpec& match) {
  msgpack::sbuffer buf(32 + match.q.size());
  Packer pk(buf);
  pk.pack_array(4);
  pk.pack_uint32(kQueryMessagesVersion);
  PackFilter(pk, match.q, match.mode, match.topics);
  return std::string(buf.data(), buf.size());
}

Result<MatchSpec> DecodeStreamOpen(std::string_view body) {
  try {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(OpenVersioned(body, kRequestLimit, 4, kQueryMessagesVersion, "stream.open request", &oh, &f));
    MatchSpec m;
    if (const char* bad = ReadFilter(f + 1, &m.q, &m.mode, &m.topics))
      return Status::Corruption(std::string("stream.open request: ") + bad);
    return m;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("stream.open request: ") + e.what());
  }
}

}  // namespace oklog
