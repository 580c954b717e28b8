#include "segments/segment_messages.h"

#include <msgpack.hpp>

#include <functional>

#include "common/msgpack_pack.h"
#include "common/ulid.h"
#include "segments/record_merge.h"

namespace oklog {
namespace {

const msgpack::unpack_limit kLimit(/*array=*/kMaxSegmentIds, /*map=*/0, /*str=*/Ulid::kTextSize, /*bin=*/0,
                                   /*ext=*/0, /*depth=*/3);

bool ReadId(const msgpack::object& o, std::string* out) {
  return ReadStr(o, Ulid::kTextSize, false, out) && out->size() == Ulid::kTextSize && IsCanonicalUlid(out->data());
}

// The fields after the version of one of this header's messages, or a reason.
Status Open(std::string_view body, uint32_t n, const char* what, msgpack::object_handle* oh,
            const msgpack::object** fields) {
  const msgpack::object* all = nullptr;
  OKLOG_RETURN_IF_ERROR(OpenVersioned(body, kLimit, n, kSegmentMessagesVersion, what, oh, &all));
  *fields = all + 1;
  return Status::Ok();
}

// Runs decode inside the one try block of each message.
template <typename T, typename F>
Result<T> Decode(const char* what, F decode) {
  try {
    return decode();
  } catch (const std::exception& e) {
    return Status::Corruption(std::string(what) + ": " + e.what());
  }
}

std::string Pack(const std::function<void(Packer&)>& fill) {
  msgpack::sbuffer buf(64);
  Packer pk(buf);
  fill(pk);
  return std::string(buf.data(), buf.size());
}

}  // namespace

std::string EncodeSegmentNext(uint64_t max_bytes) {
  return Pack([&](Packer& pk) {
    pk.pack_array(2);
    pk.pack_uint32(kSegmentMessagesVersion);
    pk.pack_uint64(max_bytes);
  });
}

Result<uint64_t> DecodeSegmentNext(std::string_view body) {
  return Decode<uint64_t>("segment.next", [&]() -> Result<uint64_t> {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(Open(body, 2, "segment.next", &oh, &f));
    uint64_t max = 0;
    if (!ReadUint(f[0], UINT64_MAX, &max) || max == 0) return Status::Corruption("segment.next: bad max bytes");
    return max;
  });
}

std::string EncodeClaimedSegments(const std::vector<ClaimedSegment>& claimed) {
  return Pack([&](Packer& pk) {
    pk.pack_array(2);
    pk.pack_uint32(kSegmentMessagesVersion);
    pk.pack_array(static_cast<uint32_t>(claimed.size()));
    for (const ClaimedSegment& c : claimed) {
      pk.pack_array(2);
      PackStr(pk, c.id);
      pk.pack_uint64(c.bytes);
    }
  });
}

Result<std::vector<ClaimedSegment>> DecodeClaimedSegments(std::string_view body) {
  return Decode<std::vector<ClaimedSegment>>("segment.next reply", [&]() -> Result<std::vector<ClaimedSegment>> {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(Open(body, 2, "segment.next reply", &oh, &f));
    if (f[0].type != msgpack::type::ARRAY) return Status::Corruption("segment.next reply: not a list");
    std::vector<ClaimedSegment> out(f[0].via.array.size);
    for (size_t i = 0; i < out.size(); ++i) {
      const msgpack::object* e = Fields(f[0].via.array.ptr[i], 2);
      if (e == nullptr || !ReadId(e[0], &out[i].id) || !ReadUint(e[1], UINT64_MAX, &out[i].bytes))
        return Status::Corruption("segment.next reply: bad entry " + std::to_string(i));
    }
    return out;
  });
}

std::string EncodeSegmentId(std::string_view id) {
  return Pack([&](Packer& pk) {
    pk.pack_array(2);
    pk.pack_uint32(kSegmentMessagesVersion);
    PackStr(pk, id);
  });
}

Result<std::string> DecodeSegmentId(std::string_view body) {
  return Decode<std::string>("segment.read", [&]() -> Result<std::string> {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(Open(body, 2, "segment.read", &oh, &f));
    std::string id;
    if (!ReadId(f[0], &id)) return Status::Corruption("segment.read: bad segment id");
    return id;
  });
}

std::string EncodeSegmentIds(const std::vector<std::string>& ids) {
  return Pack([&](Packer& pk) {
    pk.pack_array(2);
    pk.pack_uint32(kSegmentMessagesVersion);
    pk.pack_array(static_cast<uint32_t>(ids.size()));
    for (const std::string& id : ids) PackStr(pk, id);
  });
}

Result<std::vector<std::string>> DecodeSegmentIds(std::string_view body) {
  return Decode<std::vector<std::string>>("segment ids", [&]() -> Result<std::vector<std::string>> {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(Open(body, 2, "segment ids", &oh, &f));
    if (f[0].type != msgpack::type::ARRAY) return Status::Corruption("segment ids: not a list");
    std::vector<std::string> ids(f[0].via.array.size);
    for (size_t i = 0; i < ids.size(); ++i)
      if (!ReadId(f[0].via.array.ptr[i], &ids[i])) return Status::Corruption("segment ids: bad segment id");
    return ids;
  });
}

std::string EncodeStoredRecords(uint64_t records) {
  return Pack([&](Packer& pk) {
    pk.pack_array(2);
    pk.pack_uint32(kSegmentMessagesVersion);
    pk.pack_uint64(records);
  });
}

Result<uint64_t> DecodeStoredRecords(std::string_view body) {
  return Decode<uint64_t>("replica reply", [&]() -> Result<uint64_t> {
    msgpack::object_handle oh;
    const msgpack::object* f = nullptr;
    OKLOG_RETURN_IF_ERROR(Open(body, 2, "replica reply", &oh, &f));
    uint64_t n = 0;
    if (!ReadUint(f[0], UINT64_MAX, &n)) return Status::Corruption("replica reply: records");
    return n;
  });
}

}  // namespace oklog
