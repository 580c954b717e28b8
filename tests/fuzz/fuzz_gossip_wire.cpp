// Gossip wire format (gossip/wire.h): UDP packets, stream messages, and the node metadata they
// carry (gossip/node_meta.h). The first byte picks the decoder.
//   DecodePacket ok        =>  its messages, re-encoded into one packet, decode to the same
//                              encoding (the encoding is canonical after one round)
//   DecodeStreamMessage ok =>  likewise for the one message
//   DecodeNodeMeta ok      =>  EncodeNodeMeta (when within the limit) decodes to an equal meta
#include <string>
#include <variant>

#include "fuzz_check.h"
#include "gossip/node_meta.h"
#include "gossip/wire.h"

namespace gossip = oklog::gossip;

namespace {

const uint32_t kHash = gossip::ClusterHash("fuzz");

std::string EncodeAll(const std::vector<gossip::Message>& messages) {
  std::string out;
  for (const auto& m : messages) out += gossip::EncodeMessage(m);
  return out;
}

void Packet(std::string_view bytes) {
  auto p = gossip::DecodePacket(bytes, kHash);
  if (!p.ok()) return;
  FUZZ_CHECK(p->messages.size() + p->unknown_skipped <= gossip::kMaxMessagesPerPacket);
  gossip::PacketBuilder b(kHash);
  for (const auto& m : p->messages) FUZZ_CHECK(b.TryAdd(gossip::EncodeMessage(m)));  // never larger than it came
  const std::string packet = std::move(b).Finish();
  FUZZ_CHECK(packet.size() <= bytes.size());
  auto again = gossip::DecodePacket(packet, kHash);
  FUZZ_CHECK(again.ok() || p->messages.empty());  // a packet of unknown messages only re-encodes to a bare header
  if (again.ok()) {
    FUZZ_CHECK(again->unknown_skipped == 0);
    FUZZ_CHECK(EncodeAll(again->messages) == EncodeAll(p->messages));
  }
}

void Stream(std::string_view bytes) {
  auto m = gossip::DecodeStreamMessage(bytes);
  if (!m.ok()) return;
  const std::string once = gossip::EncodeMessage(*m);
  auto again = gossip::DecodeStreamMessage(once);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->index() == m->index());
  FUZZ_CHECK(gossip::EncodeMessage(*again) == once);
}

void Meta(std::string_view bytes) {
  auto m = gossip::DecodeNodeMeta(bytes);
  if (!m.ok()) return;
  auto enc = gossip::EncodeNodeMeta(*m);
  if (!enc.ok()) return;  // an older peer's short meta can grow past the limit with the newer fields
  auto again = gossip::DecodeNodeMeta(*enc);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == *m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  oklog::fuzz::Input in(data, size);
  const uint8_t which = in.Byte();
  const std::string_view rest = in.Rest();
  switch (which % 3) {
    case 0: Packet(rest); break;
    case 1: Stream(rest); break;
    case 2: Meta(rest); break;
  }
  return 0;
}
