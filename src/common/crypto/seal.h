// Sealing for the cluster port (gossip datagrams and the RPC streams) with a Keyring:
// AES-256-GCM from OpenSSL, the cluster name bound as associated data or key context, so a
// key shared by two clusters still keeps them apart.
//
// Datagrams (gossip's UDP side):
//   sealed := version:u8=1 nonce[12] ciphertext tag[16]     nonce: random per packet
//   plain  := sent_ms:u64be payload                          sent_ms: the sender's wall clock
//   aad    := "oklog-packet-v1" 0x00 cluster
// Sealed with the primary key; opened with the first key that authenticates it. A packet that
// opens under no key, was sent more than kPacketWindow from the receiver's clock, or repeats a
// nonce seen within that window (a replay) is dropped.
//
// Streams (each TCP connection of the cluster port, both directions):
//   preamble := "OKSEAL" version:u8=1 nonce[16]   the first frame each side sends, in the clear
//   key(dir) := HKDF-SHA256(ikm = keyring key, salt = sender_nonce || receiver_nonce,
//                           info = "oklog-stream-v1" 0x00 cluster)
//   frame    := ciphertext tag[16]                 every later frame; GCM nonce = frame counter
//                                                  (u64be, from 0 per direction) || 0x00000000
// A sender seals with its primary key; the receiver tries each of its keys on the first sealed
// frame and keeps the one that opens it (two nodes in the middle of a rotation may have
// different primaries). Both nonces are fresh per connection, so a recorded stream opens under
// no key later, and frames cannot be dropped, reordered or repeated (the counter). A preamble
// that repeats our own nonce (our stream reflected back) is refused.
//
// Thread: a PacketSealer or StreamSeal is used by one thread at a time (the loop thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>

#include "common/crypto/keyring.h"
#include "common/status.h"

namespace oklog::crypto {

inline constexpr uint8_t kSealVersion = 1;
inline constexpr size_t kTagBytes = 16;
inline constexpr size_t kPacketNonceBytes = 12;
inline constexpr size_t kPacketOverheadBytes = 1 + kPacketNonceBytes + 8 + kTagBytes;  // 37
inline constexpr std::chrono::milliseconds kPacketWindow{60000};
inline constexpr size_t kReplayCacheEntries = 1u << 16;  // nonces remembered, at most
inline constexpr std::string_view kPreambleMagic = "OKSEAL";
inline constexpr size_t kStreamNonceBytes = 16;
inline constexpr size_t kPreambleBytes = 6 + 1 + kStreamNonceBytes;

struct CipherCtx;  // OpenSSL's EVP_CIPHER_CTX, kept across frames

class PacketSealer {
 public:
  PacketSealer(std::shared_ptr<const Keyring> ring, std::string cluster);
  ~PacketSealer();
  PacketSealer(const PacketSealer&) = delete;
  PacketSealer& operator=(const PacketSealer&) = delete;

  void SetKeyring(std::shared_ptr<const Keyring> ring) { ring_ = std::move(ring); }
  std::string Seal(std::string_view payload, int64_t now_ms);
  // The payload, or a Status naming why it was dropped: Corruption (malformed, or opens under
  // no key), InvalidArgument (outside the time window), AlreadyExists (a replay).
  Result<std::string> Open(std::string_view sealed, int64_t now_ms);

 private:
  void Remember(const std::string& nonce, int64_t sent_ms);
  std::shared_ptr<const Keyring> ring_;
  std::string aad_;
  std::unique_ptr<CipherCtx> ctx_;
  std::unordered_set<std::string> seen_;
  std::deque<std::pair<int64_t, std::string>> seen_order_;  // (sent_ms, nonce), oldest first
};

class StreamSeal {
 public:
  StreamSeal(std::shared_ptr<const Keyring> ring, std::string_view cluster);
  ~StreamSeal();
  StreamSeal(const StreamSeal&) = delete;
  StreamSeal& operator=(const StreamSeal&) = delete;

  // What this side sends first, in the clear.
  const std::string& preamble() const { return preamble_; }
  // Takes the peer's preamble and derives the sending key. Corruption when malformed, of
  // another version, or a reflection of ours.
  Status Start(std::string_view peer_preamble);
  bool started() const { return started_; }
  // Seals one frame payload in place (appends the tag). Only after Start().
  void Seal(std::string* payload);
  // Opens one sealed frame in place (strips the tag). Corruption when it does not
  // authenticate (under any key, for the first frame; under the key found then, after).
  Status Open(std::string* frame);
  // True when both keys this stream uses are still in `ring` (after a reload, a stream keyed
  // with a removed key is closed).
  bool KeyedWithin(const Keyring& ring) const;

 private:
  std::shared_ptr<const Keyring> ring_;
  std::string info_;
  std::string preamble_;
  std::string my_nonce_, peer_nonce_;
  bool started_ = false, recv_keyed_ = false;
  Keyring::Key send_ikm_{}, recv_ikm_{};
  uint64_t send_counter_ = 0, recv_counter_ = 0;
  std::unique_ptr<CipherCtx> send_, recv_;
};

}  // namespace oklog::crypto
