#include "rpc/bulk_protocol.h"

#include <msgpack.hpp>

#include "rpc/frame_codec.h"
#include "common/msgpack_pack.h"

namespace oklog::rpc {
namespace {

const msgpack::unpack_limit kLimit(/*array=*/3, /*map=*/0, /*str=*/4096, /*bin=*/kBulkMaxFrameBytes, /*ext=*/0,
                                   /*depth=*/2);

std::string Frame(const msgpack::sbuffer& b) {
  return EncodeFrame(std::string_view(b.data(), b.size()));
}

std::string_view StrOf(const msgpack::object& o) {
  return o.type == msgpack::type::STR ? std::string_view(o.via.str.ptr, o.via.str.size) : std::string_view();
}

}  // namespace

std::string EncodeBulkSegment(const Ulid& id, std::string_view lines) {
  msgpack::sbuffer b(lines.size() + 64);
  Packer pk(b);
  pk.pack_array(3);
  PackStr(pk, "seg");
  PackStr(pk, id.ToString());
  PackBin(pk, lines);
  return Frame(b);
}

std::string EncodeBulkAck(const Ulid& id) {
  msgpack::sbuffer b;
  Packer pk(b);
  pk.pack_array(2);
  PackStr(pk, "ack");
  PackStr(pk, id.ToString());
  return Frame(b);
}

std::string EncodeBulkError(std::string_view message) {
  msgpack::sbuffer b;
  Packer pk(b);
  pk.pack_array(2);
  PackStr(pk, "err");
  PackStr(pk, message.substr(0, 1024));
  return Frame(b);
}

Result<BulkMessage> DecodeBulkMessage(std::string_view payload) {
  msgpack::object_handle oh;
  size_t off = 0;
  try {
    oh = msgpack::unpack(payload.data(), payload.size(), off, nullptr, nullptr, kLimit);
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("bulk: malformed message: ") + e.what());
  }
  const msgpack::object& o = oh.get();
  if (off != payload.size() || o.type != msgpack::type::ARRAY || o.via.array.size < 2)
    return Status::Corruption("bulk: not a message array");
  const msgpack::object* a = o.via.array.ptr;
  std::string_view kind = StrOf(a[0]);
  BulkMessage m;
  if (kind == "err") {
    m.kind = BulkMessage::Kind::kError;
    m.text = std::string(StrOf(a[1]));
    return m;
  }
  std::optional<Ulid> id = Ulid::Parse(StrOf(a[1]));
  if (!id) return Status::Corruption("bulk: bad segment id");
  m.id = *id;
  if (kind == "ack" && o.via.array.size == 2) {
    m.kind = BulkMessage::Kind::kAck;
    return m;
  }
  if (kind == "seg" && o.via.array.size == 3 && a[2].type == msgpack::type::BIN) {
    m.kind = BulkMessage::Kind::kSegment;
    m.text.assign(a[2].via.bin.ptr, a[2].via.bin.size);
    return m;
  }
  return Status::Corruption("bulk: unknown message");
}

}  // namespace oklog::rpc
