// msgpack packing helpers shared by the cluster wire formats (wire.cpp, frame_codec.cpp).
#pragma once

#include <msgpack.hpp>

#include <cstdint>
#include <string_view>

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

}  // namespace oklog
