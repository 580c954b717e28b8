// The bulk ingest port (rpc/bulk_protocol.h): frames as the ingester splits them, each decoded
// as a bulk message.
//   DecodeBulkMessage ok  =>  re-encoding (EncodeBulkSegment / Ack / Error) and decoding again
//                             gives the same kind, id and text (an error message is cut at
//                             1024 bytes by the encoder); a segment id either fits its run of
//                             records or is refused by RunFits
#include <string>

#include "fuzz_check.h"
#include "rpc/bulk_protocol.h"
#include "rpc/frame_codec.h"

namespace rpc = oklog::rpc;

namespace {

void Check(const std::string& payload) {
  auto m = rpc::DecodeBulkMessage(payload);
  if (!m.ok()) return;
  std::string framed;
  switch (m->kind) {
    case rpc::BulkMessage::Kind::kSegment: framed = rpc::EncodeBulkSegment(m->id, m->text); break;
    case rpc::BulkMessage::Kind::kAck: framed = rpc::EncodeBulkAck(m->id); break;
    case rpc::BulkMessage::Kind::kError: framed = rpc::EncodeBulkError(m->text); break;
  }
  rpc::FrameDecoder dec(rpc::kBulkMaxFrameBytes);
  FUZZ_CHECK(dec.Feed(framed.data(), framed.size()));  // no budget: never refused
  std::string frame;
  auto r = dec.Next(&frame);
  FUZZ_CHECK(r.ok() && *r && dec.buffered() == 0);
  auto again = rpc::DecodeBulkMessage(frame);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->kind == m->kind);
  if (m->kind == rpc::BulkMessage::Kind::kError) {
    FUZZ_CHECK(again->text == m->text.substr(0, 1024));
  } else {
    FUZZ_CHECK(again->id == m->id);
    FUZZ_CHECK(again->text == m->text);
  }
  if (m->kind == rpc::BulkMessage::Kind::kSegment) {
    uint64_t lines = 0;
    for (char c : m->text) lines += c == '\n';
    if (lines > 0 && oklog::UlidStream::RunFits(m->id, lines)) {
      oklog::UlidStream s = oklog::UlidStream::At(m->id);
      FUZZ_CHECK(s.NextRun(m->id.unix_ms(), lines) == m->id && !s.saturated());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view stream(reinterpret_cast<const char*>(data), size);
  rpc::FrameDecoder dec(rpc::kBulkMaxFrameBytes);
  FUZZ_CHECK(dec.Feed(stream.data(), stream.size()));  // no budget: never refused
  std::string frame;
  for (;;) {
    auto r = dec.Next(&frame);
    if (!r.ok() || !*r) break;
    Check(frame);
  }
  Check(std::string(stream));
  return 0;
}
