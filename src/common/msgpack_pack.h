// msgpack helpers shared by every positional wire format (gossip's wire.cpp, the RPC frame codec,
// the data-plane messages): packers, and bounded field readers that never throw (false on a
// type or bound violation, so each format's one Decode turns it into Corruption).
#pragma once

#include <msgpack.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/ulid.h"

namespace oklog {

using Packer = msgpack::packer<msgpack::sbuffer>;

inline void PackStr(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

inline void PackBin(Packer& pk, std::string_view s) {
  pk.pack_bin(static_cast<uint32_t>(s.size()));
  pk.pack_bin_body(s.data(), static_cast<uint32_t>(s.size()));
}

// A ULID as bin16 (its 16 bytes).
inline void PackUlid(Packer& pk, const Ulid& u) {
  PackBin(pk, std::string_view(reinterpret_cast<const char*>(u.bytes().data()), u.bytes().size()));
}

// ---- readers ----

inline bool ReadUlid(const msgpack::object& o, Ulid* out) {
  if (o.type != msgpack::type::BIN || o.via.bin.size != 16) return false;
  *out = Ulid::FromBytes(reinterpret_cast<const uint8_t*>(o.via.bin.ptr));
  return true;
}

// Unpacks the one object that fills all of body, within limit. False on trailing bytes; throws
// (msgpack-c) on malformed or over-limit input, so call it inside the format's one Decode.
inline bool UnpackWhole(std::string_view body, const msgpack::unpack_limit& limit, msgpack::object_handle* oh) {
  size_t off = 0;
  *oh = msgpack::unpack(body.data(), body.size(), off, nullptr, nullptr, limit);
  return off == body.size();
}

inline bool ReadUint(const msgpack::object& o, uint64_t max, uint64_t* out) {
  if (o.type != msgpack::type::POSITIVE_INTEGER || o.via.u64 > max) return false;
  *out = o.via.u64;
  return true;
}
template <typename T>
bool ReadUintAs(const msgpack::object& o, T* out) {
  uint64_t v = 0;
  if (!ReadUint(o, std::numeric_limits<T>::max(), &v)) return false;
  *out = static_cast<T>(v);
  return true;
}
inline bool ReadStr(const msgpack::object& o, size_t max, bool allow_empty, std::string* out) {
  if (o.type != msgpack::type::STR || o.via.str.size > max) return false;
  if (!allow_empty && o.via.str.size == 0) return false;
  out->assign(o.via.str.ptr, o.via.str.size);
  return true;
}
inline bool ReadBin(const msgpack::object& o, size_t max, std::string* out) {
  if (o.type != msgpack::type::BIN || o.via.bin.size > max) return false;
  out->assign(o.via.bin.ptr, o.via.bin.size);
  return true;
}
// The elements of an array of at least min_size elements; nullptr for anything else.
inline const msgpack::object* Fields(const msgpack::object& o, uint32_t min_size) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size < min_size) return nullptr;
  return o.via.array.ptr;
}

// Opens a body that is one [version, field...] array of at least n elements (a later version may
// append fields) filling all of body, within limit: *elements then points at the version. Returns
// Corruption "what: ..." for trailing bytes, another shape or another version. Throws like
// UnpackWhole: call it inside the format's one Decode.
inline Status OpenVersioned(std::string_view body, const msgpack::unpack_limit& limit, uint32_t n, uint32_t version,
                            std::string_view what, msgpack::object_handle* oh, const msgpack::object** elements) {
  auto bad = [what](const std::string& why) { return Status::Corruption(std::string(what) + ": " + why); };
  if (!UnpackWhole(body, limit, oh)) return bad("trailing bytes");
  const msgpack::object* f = Fields(oh->get(), n);
  if (f == nullptr) return bad("not an array of " + std::to_string(n));
  uint64_t v = 0;
  if (!ReadUint(f[0], UINT32_MAX, &v) || v != version) return bad("unknown version");
  *elements = f;
  return Status::Ok();
}

}  // namespace oklog
