#include "rpc/frame_codec.h"

#include <msgpack.hpp>

#include "common/msgpack_pack.h"

namespace oklog::rpc {
namespace {

const msgpack::unpack_limit kLimit(/*array=*/8, /*map=*/0, /*str=*/4096, /*bin=*/kMaxFrameBytes, /*ext=*/0,
                                   /*depth=*/2);

// Strings and bins point into the payload instead of being copied into the unpacker's zone
// (an RPC body is often megabytes): the payload outlives every use of the parsed object.
bool ReferenceAll(msgpack::type::object_type, std::size_t, void*) { return true; }

// Parses exactly one msgpack array of at least min_size from payload.
msgpack::object_handle UnpackArray(std::string_view payload, uint32_t min_size, bool* ok) {
  size_t off = 0;
  msgpack::object_handle oh = msgpack::unpack(payload.data(), payload.size(), off, ReferenceAll, nullptr, kLimit);
  const msgpack::object& o = oh.get();
  *ok = off == payload.size() && o.type == msgpack::type::ARRAY && o.via.array.size >= min_size;
  return oh;
}

bool Str(const msgpack::object& o, std::string* out) {
  if (o.type != msgpack::type::STR) return false;
  out->assign(o.via.str.ptr, o.via.str.size);
  return true;
}

}  // namespace

std::string EncodeFrame(std::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderBytes + payload.size());
  const auto n = static_cast<uint32_t>(payload.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xFF));
  out.append(payload);
  return out;
}

Result<bool> FrameDecoder::Next(std::string* out) {
  if (broken_) return Status::Corruption("frame stream already failed");
  if (buffered() < kFrameHeaderBytes) return false;
  const auto* u = reinterpret_cast<const uint8_t*>(buf_.data() + pos_);
  const size_t len = (size_t{u[0]} << 24) | (size_t{u[1]} << 16) | (size_t{u[2]} << 8) | u[3];
  if (len > max_) {
    broken_ = true;
    return Status::Corruption("frame of " + std::to_string(len) + " bytes exceeds the limit");
  }
  if (buffered() < kFrameHeaderBytes + len) return false;
  out->assign(buf_, pos_ + kFrameHeaderBytes, len);
  pos_ += kFrameHeaderBytes + len;
  if (pos_ == buf_.size()) {
    // A large frame's buffer is given back rather than kept for the connection's life (what
    // the budget is charged is what is buffered).
    if (buf_.capacity() > (1u << 20)) std::string().swap(buf_);
    else buf_.clear();
    pos_ = 0;
  } else if (pos_ > (1u << 20) && pos_ * 2 > buf_.size()) {
    buf_.erase(0, pos_);  // compact now and then, not per frame
    pos_ = 0;
  }
  if (charge_) charge_->Set(buf_.size());
  return true;
}

std::string EncodeHello(const Hello& h) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_array(4);
  PackStr(pk, kHelloMagic);
  pk.pack_uint32(h.version);
  PackStr(pk, h.cluster);
  PackStr(pk, h.node);
  return std::string(buf.data(), buf.size());
}

// The one decode function for hellos; msgpack-c exceptions stop here.
Result<Hello> DecodeHello(std::string_view payload) {
  try {
    bool ok = false;
    msgpack::object_handle oh = UnpackArray(payload, 4, &ok);
    if (!ok) return Status::Corruption("hello: not a 4-element array");
    const msgpack::object* f = oh.get().via.array.ptr;
    std::string magic;
    Hello h;
    if (!Str(f[0], &magic) || magic != kHelloMagic) return Status::Corruption("hello: bad magic");
    if (f[1].type != msgpack::type::POSITIVE_INTEGER || f[1].via.u64 > UINT32_MAX)
      return Status::Corruption("hello: bad version");
    h.version = static_cast<uint32_t>(f[1].via.u64);
    if (!Str(f[2], &h.cluster) || !Str(f[3], &h.node)) return Status::Corruption("hello: bad names");
    return h;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("hello: ") + e.what());
  }
}

std::string EncodeEnvelope(const Envelope& e) {
  // Everything but the body into a small buffer, then the body appended once.
  msgpack::sbuffer head(64 + e.method.size());
  Packer pk(head);
  pk.pack_array(4);
  pk.pack_uint8(static_cast<uint8_t>(e.kind));
  pk.pack_uint64(e.request_id);
  if (e.kind == Envelope::Kind::kRequest) {
    PackStr(pk, e.method);
  } else {
    pk.pack_uint32(e.status);
  }
  pk.pack_bin(static_cast<uint32_t>(e.body.size()));
  std::string out;
  out.reserve(head.size() + e.body.size());
  out.append(head.data(), head.size());
  out.append(e.body);
  return out;
}

Result<Envelope> DecodeEnvelope(std::string_view payload) {
  try {
    bool ok = false;
    msgpack::object_handle oh = UnpackArray(payload, 4, &ok);
    if (!ok) return Status::Corruption("envelope: not a 4-element array");
    const msgpack::object* f = oh.get().via.array.ptr;
    Envelope e;
    if (f[0].type != msgpack::type::POSITIVE_INTEGER || f[0].via.u64 > 4) return Status::Corruption("envelope: kind");
    e.kind = static_cast<Envelope::Kind>(f[0].via.u64);
    if (f[1].type != msgpack::type::POSITIVE_INTEGER) return Status::Corruption("envelope: request id");
    e.request_id = f[1].via.u64;
    if (e.kind == Envelope::Kind::kRequest) {
      if (!Str(f[2], &e.method)) return Status::Corruption("envelope: method");
    } else {
      if (f[2].type != msgpack::type::POSITIVE_INTEGER || f[2].via.u64 > UINT32_MAX)
        return Status::Corruption("envelope: status");
      e.status = static_cast<uint32_t>(f[2].via.u64);
    }
    if (f[3].type != msgpack::type::BIN) return Status::Corruption("envelope: body");
    e.body.assign(f[3].via.bin.ptr, f[3].via.bin.size);
    return e;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("envelope: ") + e.what());
  }
}

}  // namespace oklog::rpc
