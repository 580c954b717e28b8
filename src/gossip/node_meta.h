// The metadata a node gossips about itself (≤ kMaxMetaBytes encoded): its roles and the
// addresses other modules need to reach it. Opaque bytes to Membership; typed here.
//
//   meta := msgpack [roles:[str*], api:str, ingest_fast:uint16, ingest_durable:uint16,
//                    ingest_bulk:uint16, version:str, full:[str*],
//                    load:[connections:uint, unconsumed_bytes:uint, free_bytes:uint], shedding:str]
//   (trailing fields may be appended; a decoder ignores those it does not know and takes the
//   missing trailing ones as empty, so nodes of neighbouring versions understand each other)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace oklog::gossip {

struct NodeMeta {
  std::vector<std::string> roles;  // "ingest", "store"
  std::string api_addr;            // "host:port" of the HTTP API
  uint16_t ingest_fast_port = 0;
  uint16_t ingest_durable_port = 0;
  uint16_t ingest_bulk_port = 0;
  std::string version;
  // Directories whose disk is full ("ingest", "store"; common/fs/disk_guard.h): such a store
  // refuses replicas, so consumers try it last.
  std::vector<std::string> full;
  // An ingest node's load, refreshed every few seconds: open ingest connections, bytes the
  // stores have not consumed yet, free bytes on its ingest disk.
  struct Load {
    uint64_t connections = 0, unconsumed_bytes = 0, free_bytes = 0;
    friend bool operator==(const Load&, const Load&) = default;
  };
  Load load;
  // Why this ingester refuses new connections ("" when it does not): segments/ingest/shedding.h.
  std::string shedding;

  bool HasRole(std::string_view role) const;
  friend bool operator==(const NodeMeta&, const NodeMeta&) = default;
};

// Returns InvalidArgument when the encoding exceeds kMaxMetaBytes.
Result<std::string> EncodeNodeMeta(const NodeMeta& m);
// Returns Corruption for malformed bytes. Empty bytes decode to an empty NodeMeta.
Result<NodeMeta> DecodeNodeMeta(std::string_view bytes);

}  // namespace oklog::gossip
