// The keyed cluster port (common/crypto/seal.h, keyring.h): sealed gossip datagrams, the sealed
// stream preamble and frames, and the key file. The first byte picks the case.
//   0  PacketSealer::Open of raw bytes: Corruption (no key opens them), never a crash
//   1  Seal(payload, sent) then Open(at now): the payload when |now - sent| <= the window, else
//      InvalidArgument; opened twice: AlreadyExists; one byte flipped: Corruption
//   2  two StreamSeals keyed to each other: every frame opens to what was sealed; raw bytes
//      as a frame, or as the peer's preamble, are refused
//   3  Keyring::Parse of a key file
#include <memory>
#include <string>

#include "common/crypto/keyring.h"
#include "common/crypto/seal.h"
#include "fuzz_check.h"

namespace crypto = oklog::crypto;

namespace {

std::shared_ptr<const crypto::Keyring> Ring() {
  static const auto ring = [] {
    auto r = crypto::Keyring::Parse(
        "# two keys: the primary, and one being rotated out\n"
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
        "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n");
    FUZZ_CHECK(r.ok());
    return *r;
  }();
  return ring;
}

void OpenRaw(oklog::fuzz::Input& in) {
  const auto now = static_cast<int64_t>(in.U64());
  crypto::PacketSealer sealer(Ring(), "fuzz");
  auto r = sealer.Open(in.Rest(), now);
  FUZZ_CHECK(!r.ok());
}

void SealOpen(oklog::fuzz::Input& in) {
  const auto sent = static_cast<int64_t>(in.U64());
  const auto now = static_cast<int64_t>(in.U64());
  const uint8_t flip = in.Byte();
  const std::string payload(in.Rest());
  crypto::PacketSealer sender(Ring(), "fuzz");
  crypto::PacketSealer receiver(Ring(), "fuzz");
  const std::string sealed = sender.Seal(payload, sent);
  FUZZ_CHECK(sealed.size() == payload.size() + crypto::kPacketOverheadBytes);

  std::string tampered = sealed;
  tampered[flip % tampered.size()] ^= static_cast<char>(1 + (flip >> 5));
  FUZZ_CHECK(receiver.Open(tampered, now).status().code() == oklog::Code::kCorruption);

  const __int128 skew = static_cast<__int128>(now) - sent;
  const bool in_window = skew <= crypto::kPacketWindow.count() && -skew <= crypto::kPacketWindow.count();
  auto opened = receiver.Open(sealed, now);
  if (!in_window) {
    FUZZ_CHECK(opened.status().code() == oklog::Code::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(opened.ok() && *opened == payload);
  FUZZ_CHECK(receiver.Open(sealed, now).status().code() == oklog::Code::kAlreadyExists);
}

void Streams(oklog::fuzz::Input& in) {
  crypto::StreamSeal a(Ring(), "fuzz");
  crypto::StreamSeal b(Ring(), "fuzz");
  crypto::StreamSeal stranger(Ring(), "fuzz");
  FUZZ_CHECK(a.Start(b.preamble()).ok());
  FUZZ_CHECK(b.Start(a.preamble()).ok());
  // Frames: len:u8 bytes, alternately a's and b's; a frame of raw bytes at the end.
  int turn = 0;
  while (!in.empty()) {
    const uint8_t len = in.Byte();
    if (len == 0xFF) break;
    std::string frame;
    for (uint8_t i = 0; i < len && !in.empty(); ++i) frame.push_back(static_cast<char>(in.Byte()));
    const std::string plain = frame;
    crypto::StreamSeal& from = turn % 2 == 0 ? a : b;
    crypto::StreamSeal& to = turn % 2 == 0 ? b : a;
    from.Seal(&frame);
    FUZZ_CHECK(frame.size() == plain.size() + crypto::kTagBytes);
    FUZZ_CHECK(to.Open(&frame).ok());
    FUZZ_CHECK(frame == plain);
    ++turn;
  }
  std::string raw(in.Rest());
  FUZZ_CHECK(!b.Open(&raw).ok());
  (void)stranger.Start(raw);  // a peer's preamble of any bytes: a Status, never a crash
  std::string raw2(raw);
  if (stranger.started()) FUZZ_CHECK(!stranger.Open(&raw2).ok());
  FUZZ_CHECK(a.KeyedWithin(*Ring()) && b.KeyedWithin(*Ring()));
}

void KeyFile(oklog::fuzz::Input& in) {
  auto r = crypto::Keyring::Parse(in.Rest());
  if (!r.ok()) return;
  FUZZ_CHECK(!(*r)->keys().empty());
  for (const auto& k : (*r)->keys()) {
    FUZZ_CHECK((*r)->Contains(k));
    FUZZ_CHECK(crypto::Keyring::Fingerprint(k).size() == 8);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  oklog::fuzz::Input in(data, size);
  switch (in.Byte() % 4) {
    case 0: OpenRaw(in); break;
    case 1: SealOpen(in); break;
    case 2: Streams(in); break;
    case 3: KeyFile(in); break;
  }
  return 0;
}
