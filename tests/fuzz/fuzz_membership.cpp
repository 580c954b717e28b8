// The SWIM state machine fed peer bytes (gossip/membership.h): what DecodePacket and
// DecodeStreamMessage let through must never trip an assertion or break the member table.
// The input is a script of steps: op:u8 len:u8 bytes[len]. op % 4: 0 a UDP packet (the bytes
// behind a valid header of this cluster), 1 a stream message, 2 time passes (len * 37 ms and
// the timers run), 3 a packet with the raw bytes (header included). The sender is one of four
// addresses (op / 4 % 4). Invariants after every step: self is alive, no incarnation above
// kMaxIncarnation, at most one entry per name.
#include <set>
#include <string>

#include "fuzz_check.h"
#include "gossip/config.h"
#include "gossip/membership.h"
#include "gossip/wire.h"

namespace gossip = oklog::gossip;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gossip::Config cfg = gossip::Config::Local();
  cfg.name = "self";
  cfg.advertise_addr = "10.0.0.1:7659";
  cfg.cluster_name = "fuzz";
  gossip::Instant now{std::chrono::milliseconds(1'000'000)};
  auto created = gossip::Membership::Create(cfg, "", now);
  FUZZ_CHECK(created.ok());
  gossip::Membership& m = **created;
  m.Join({"10.0.0.2:7659"}, now);
  (void)m.TakeOutbox();

  static const char* kFrom[] = {"10.0.0.2:7659", "10.0.0.3:7659", "10.0.0.4:7659", "10.0.0.1:7659"};
  const uint32_t hash = gossip::ClusterHash("fuzz");
  std::string header;
  header.push_back(static_cast<char>(gossip::kPacketMagic));
  header.push_back(static_cast<char>(gossip::kProtocolVersion));
  for (int shift = 24; shift >= 0; shift -= 8) header.push_back(static_cast<char>((hash >> shift) & 0xFF));

  oklog::fuzz::Input in(data, size);
  for (int steps = 0; !in.empty() && steps < 64; ++steps) {
    const uint8_t op = in.Byte();
    const uint8_t len = in.Byte();
    std::string bytes;
    for (uint8_t i = 0; i < len && !in.empty(); ++i) bytes.push_back(static_cast<char>(in.Byte()));
    const std::string from = kFrom[(op / 4) % 4];
    switch (op % 4) {
      case 0: m.OnPacket(from, header + bytes, now); break;
      case 1: (void)m.OnStream(from, bytes, now); break;
      case 2:
        now += std::chrono::milliseconds(uint64_t{len} * 37);
        m.OnTimer(now);
        break;
      case 3: m.OnPacket(from, bytes, now); break;
    }
    (void)m.TakeOutbox();
    FUZZ_CHECK(m.self().state == gossip::MemberState::kAlive);
    std::set<std::string> names;
    for (const auto& info : m.Members()) {
      FUZZ_CHECK(info.incarnation <= gossip::kMaxIncarnation);
      FUZZ_CHECK(names.insert(info.name).second);
    }
    FUZZ_CHECK(m.LiveCount() >= 1);
  }
  return 0;
}
