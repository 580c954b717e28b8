// The cluster port's TCP framing (rpc/frame_codec.h, rpc/rpc.h): the frame splitter fed in
// pieces, then every frame as a hello, an envelope and a credit.
//   FrameDecoder   =>  the frames, re-framed, are exactly the bytes consumed; an oversize
//                      length fails and stays failed
//   DecodeHello ok / DecodeEnvelope ok / DecodeCredit ok  =>  encode then decode gives equal
//                      fields, and the encoding is canonical
// Input: max_frame:u8 (limit = 1 + 64 * it, small so lengths can exceed it), piece sizes
// step:u8, then the stream.
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "rpc/frame_codec.h"
#include "rpc/rpc.h"

namespace rpc = oklog::rpc;

namespace {

void CheckHello(const std::string& payload) {
  auto h = rpc::DecodeHello(payload);
  if (!h.ok()) return;
  const std::string enc = rpc::EncodeHello(*h);
  auto again = rpc::DecodeHello(enc);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->version == h->version && again->cluster == h->cluster && again->node == h->node);
  FUZZ_CHECK(rpc::EncodeHello(*again) == enc);
}

void CheckEnvelope(const std::string& payload) {
  auto e = rpc::DecodeEnvelope(payload);
  if (!e.ok()) return;
  FUZZ_CHECK(static_cast<uint8_t>(e->kind) <= 4);
  const std::string enc = rpc::EncodeEnvelope(*e);
  auto again = rpc::DecodeEnvelope(enc);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->kind == e->kind && again->request_id == e->request_id && again->body == e->body);
  if (e->kind == rpc::Envelope::Kind::kRequest) {
    FUZZ_CHECK(again->method == e->method);
  } else {
    FUZZ_CHECK(again->status == e->status);
    // A status from the wire maps to a Status and back to the same number (or to IOError's
    // for a code this version does not know).
    const oklog::Status s = rpc::StatusFromWire(e->status, e->body);
    FUZZ_CHECK(s.ok() == (e->status == 0));
    const uint32_t back = rpc::WireStatus(s);
    FUZZ_CHECK(back == e->status || back == static_cast<uint32_t>(rpc::WireCode::kIOError));
  }
  FUZZ_CHECK(rpc::EncodeEnvelope(*again) == enc);
}

void CheckCredit(const std::string& payload) {
  auto c = rpc::DecodeCredit(payload);
  FUZZ_CHECK(c.ok() == (payload.size() == 8));
  if (c.ok()) FUZZ_CHECK(rpc::EncodeCredit(*c) == payload);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  oklog::fuzz::Input in(data, size);
  const size_t max_frame = 1 + 64 * size_t{in.Byte()};
  const size_t step = 1 + in.Byte();
  const std::string_view stream = in.Rest();

  rpc::FrameDecoder dec(max_frame);
  std::string reframed;
  std::vector<std::string> frames;
  bool broken = false;
  for (size_t off = 0; off < stream.size() && !broken;) {
    const size_t n = std::min(step, stream.size() - off);
    FUZZ_CHECK(dec.Feed(stream.data() + off, n));  // no budget: never refused
    off += n;
    std::string frame;
    for (;;) {
      auto r = dec.Next(&frame);
      if (!r.ok()) {
        broken = true;
        FUZZ_CHECK(!dec.Next(&frame).ok());  // sticky
        break;
      }
      if (!*r) break;
      FUZZ_CHECK(frame.size() <= max_frame);
      reframed += rpc::EncodeFrame(frame);
      frames.push_back(std::move(frame));
    }
  }
  FUZZ_CHECK(stream.substr(0, reframed.size()) == reframed);
  if (!broken) FUZZ_CHECK(reframed.size() + dec.buffered() == stream.size());

  for (const std::string& f : frames) {
    CheckHello(f);
    CheckEnvelope(f);
    CheckCredit(f);
  }
  // The whole stream as one payload too: the decoders take any bytes.
  const std::string whole(stream);
  CheckHello(whole);
  CheckEnvelope(whole);
  return 0;
}
