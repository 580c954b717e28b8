#include "gossip/node_meta.h"

#include <algorithm>
#include <msgpack.hpp>

#include "gossip/wire.h"

namespace oklog::gossip {

bool NodeMeta::HasRole(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

Result<std::string> EncodeNodeMeta(const NodeMeta& m) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(9);
  pk.pack_array(static_cast<uint32_t>(m.roles.size()));
  for (const std::string& r : m.roles) pk.pack(r);
  pk.pack(m.api_addr);
  pk.pack_uint16(m.ingest_fast_port);
  pk.pack_uint16(m.ingest_durable_port);
  pk.pack_uint16(m.ingest_bulk_port);
  pk.pack(m.version);
  pk.pack_array(static_cast<uint32_t>(m.full.size()));
  for (const std::string& d : m.full) pk.pack(d);
  pk.pack_array(3);
  pk.pack(m.load.connections);
  pk.pack(m.load.unconsumed_bytes);
  pk.pack(m.load.free_bytes);
  pk.pack(m.shedding);
  if (buf.size() > kMaxMetaBytes)
    return Status::InvalidArgument("node metadata is " + std::to_string(buf.size()) + " bytes, limit " +
                                   std::to_string(kMaxMetaBytes));
  return std::string(buf.data(), buf.size());
}

Result<NodeMeta> DecodeNodeMeta(std::string_view bytes) {
  NodeMeta m;
  if (bytes.empty()) return m;
  if (bytes.size() > kMaxMetaBytes) return Status::Corruption("node metadata too long");
  try {
    size_t off = 0;
    const msgpack::unpack_limit limit(32, 0, kMaxMetaBytes, 0, 0, 3);
    msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size(), off, nullptr, nullptr, limit);
    const msgpack::object& o = oh.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size < 6) return Status::Corruption("node metadata: shape");
    const msgpack::object* f = o.via.array.ptr;
    auto str = [](const msgpack::object& x, std::string* out) {
      if (x.type != msgpack::type::STR) return false;
      out->assign(x.via.str.ptr, x.via.str.size);
      return true;
    };
    auto port = [](const msgpack::object& x, uint16_t* out) {
      if (x.type != msgpack::type::POSITIVE_INTEGER || x.via.u64 > 65535) return false;
      *out = static_cast<uint16_t>(x.via.u64);
      return true;
    };
    if (f[0].type != msgpack::type::ARRAY) return Status::Corruption("node metadata: roles");
    for (uint32_t i = 0; i < f[0].via.array.size; ++i) {
      std::string r;
      if (!str(f[0].via.array.ptr[i], &r)) return Status::Corruption("node metadata: role");
      m.roles.push_back(std::move(r));
    }
    if (!str(f[1], &m.api_addr) || !port(f[2], &m.ingest_fast_port) || !port(f[3], &m.ingest_durable_port) ||
        !port(f[4], &m.ingest_bulk_port) || !str(f[5], &m.version))
      return Status::Corruption("node metadata: fields");
    if (o.via.array.size >= 7) {
      if (f[6].type != msgpack::type::ARRAY) return Status::Corruption("node metadata: full");
      for (uint32_t i = 0; i < f[6].via.array.size; ++i) {
        std::string d;
        if (!str(f[6].via.array.ptr[i], &d)) return Status::Corruption("node metadata: full dir");
        m.full.push_back(std::move(d));
      }
    }
    if (o.via.array.size >= 9) {
      const msgpack::object& l = f[7];
      auto uint = [](const msgpack::object& x, uint64_t* out) {
        if (x.type != msgpack::type::POSITIVE_INTEGER) return false;
        *out = x.via.u64;
        return true;
      };
      if (l.type != msgpack::type::ARRAY || l.via.array.size < 3 || !uint(l.via.array.ptr[0], &m.load.connections) ||
          !uint(l.via.array.ptr[1], &m.load.unconsumed_bytes) || !uint(l.via.array.ptr[2], &m.load.free_bytes))
        return Status::Corruption("node metadata: load");
      if (!str(f[8], &m.shedding)) return Status::Corruption("node metadata: shedding");
    }
    return m;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("node metadata: ") + e.what());
  }
}

}  // namespace oklog::gossip
