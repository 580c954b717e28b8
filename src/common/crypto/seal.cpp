#include "common/crypto/seal.h"

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstring>
#include <limits>

namespace oklog::crypto {

struct CipherCtx {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
};

namespace {

constexpr size_t kGcmNonceBytes = 12;
constexpr std::string_view kPacketAad = "oklog-packet-v1";
constexpr std::string_view kStreamInfo = "oklog-stream-v1";

void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}
const uint8_t* U8(const char* p) { return reinterpret_cast<const uint8_t*>(p); }
uint8_t* U8(char* p) { return reinterpret_cast<uint8_t*>(p); }

// Sets the key (when given) and the nonce, then feeds the aad. Returns false on an OpenSSL
// failure (which only a broken library gives).
bool Begin(EVP_CIPHER_CTX* c, bool encrypt, const uint8_t* key, const uint8_t* nonce, std::string_view aad) {
  int ok = encrypt ? EVP_EncryptInit_ex(c, key ? EVP_aes_256_gcm() : nullptr, nullptr, key, nonce)
                   : EVP_DecryptInit_ex(c, key ? EVP_aes_256_gcm() : nullptr, nullptr, key, nonce);
  if (ok != 1) return false;
  if (aad.empty()) return true;
  int len = 0;
  return (encrypt ? EVP_EncryptUpdate(c, nullptr, &len, U8(aad.data()), static_cast<int>(aad.size()))
                  : EVP_DecryptUpdate(c, nullptr, &len, U8(aad.data()), static_cast<int>(aad.size()))) == 1;
}

// Encrypts n bytes at p in place and writes the tag after them (p must have n + 16 bytes).
bool EncryptInPlace(EVP_CIPHER_CTX* c, uint8_t* p, size_t n) {
  int len = 0, fin = 0;
  if (n > 0 && EVP_EncryptUpdate(c, p, &len, p, static_cast<int>(n)) != 1) return false;
  if (EVP_EncryptFinal_ex(c, p + len, &fin) != 1) return false;
  return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes), p + n) == 1;
}

// Decrypts n bytes from `in` into `out` (may be the same) and checks the tag at in + n.
bool Decrypt(EVP_CIPHER_CTX* c, const uint8_t* in, size_t n, uint8_t* out) {
  int len = 0, fin = 0;
  if (n > 0 && EVP_DecryptUpdate(c, out, &len, in, static_cast<int>(n)) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes),
                          const_cast<uint8_t*>(in + n)) != 1)
    return false;
  return EVP_DecryptFinal_ex(c, out + len, &fin) == 1;
}

bool Hkdf(const Keyring::Key& ikm, std::string_view salt, std::string_view info, Keyring::Key* out) {
  EVP_PKEY_CTX* p = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  if (!p) return false;
  size_t len = out->size();
  const bool ok = EVP_PKEY_derive_init(p) == 1 && EVP_PKEY_CTX_set_hkdf_md(p, EVP_sha256()) == 1 &&
                  EVP_PKEY_CTX_set1_hkdf_salt(p, U8(salt.data()), static_cast<int>(salt.size())) == 1 &&
                  EVP_PKEY_CTX_set1_hkdf_key(p, ikm.data(), static_cast<int>(ikm.size())) == 1 &&
                  EVP_PKEY_CTX_add1_hkdf_info(p, U8(info.data()), static_cast<int>(info.size())) == 1 &&
                  EVP_PKEY_derive(p, out->data(), &len) == 1 && len == out->size();
  EVP_PKEY_CTX_free(p);
  return ok;
}

void CounterNonce(uint64_t counter, uint8_t nonce[kGcmNonceBytes]) {
  PutU64(nonce, counter);
  std::memset(nonce + 8, 0, 4);
}

}  // namespace

// ---- datagrams ----

PacketSealer::PacketSealer(std::shared_ptr<const Keyring> ring, std::string cluster)
    : ring_(std::move(ring)), ctx_(std::make_unique<CipherCtx>()) {
  aad_.assign(kPacketAad);
  aad_.push_back('\0');
  aad_ += cluster;
}

PacketSealer::~PacketSealer() = default;

std::string PacketSealer::Seal(std::string_view payload, int64_t now_ms) {
  std::string out(1 + kPacketNonceBytes + 8 + payload.size() + kTagBytes, '\0');
  uint8_t* p = U8(out.data());
  p[0] = kSealVersion;
  uint8_t* nonce = p + 1;
  if (!RandomBytes(nonce, kPacketNonceBytes)) return {};
  uint8_t* body = nonce + kPacketNonceBytes;
  PutU64(body, static_cast<uint64_t>(now_ms));
  std::memcpy(body + 8, payload.data(), payload.size());
  if (!Begin(ctx_->ctx, true, ring_->primary().data(), nonce, aad_) ||
      !EncryptInPlace(ctx_->ctx, body, 8 + payload.size()))
    return {};
  return out;
}

Result<std::string> PacketSealer::Open(std::string_view sealed, int64_t now_ms) {
  if (sealed.size() < kPacketOverheadBytes) return Status::Corruption("sealed packet: too short");
  const uint8_t* p = U8(sealed.data());
  if (p[0] != kSealVersion) return Status::Corruption("sealed packet: version " + std::to_string(p[0]));
  const uint8_t* nonce = p + 1;
  const uint8_t* body = nonce + kPacketNonceBytes;
  const size_t n = sealed.size() - 1 - kPacketNonceBytes - kTagBytes;
  std::string plain(n, '\0');
  bool opened = false;
  for (const Keyring::Key& k : ring_->keys()) {
    if (Begin(ctx_->ctx, false, k.data(), nonce, aad_) && Decrypt(ctx_->ctx, body, n, U8(plain.data()))) {
      opened = true;
      break;
    }
  }
  if (!opened) return Status::Corruption("sealed packet: opens under no key");
  const auto sent_ms = static_cast<int64_t>(GetU64(U8(plain.data())));
  // The distance in unsigned arithmetic: two int64 clocks can be up to 2^64-1 apart, which a
  // signed difference overflows (a keyholder's packet may carry any sent_ms).
  const bool ahead = sent_ms > now_ms;
  const uint64_t skew = ahead ? static_cast<uint64_t>(sent_ms) - static_cast<uint64_t>(now_ms)
                              : static_cast<uint64_t>(now_ms) - static_cast<uint64_t>(sent_ms);
  if (skew > static_cast<uint64_t>(kPacketWindow.count()))
    return Status::InvalidArgument("sealed packet: sent " + std::string(ahead ? "" : "-") + std::to_string(skew) +
                                   " ms from our clock");
  std::string key(reinterpret_cast<const char*>(nonce), kPacketNonceBytes);
  if (seen_.count(key)) return Status::AlreadyExists("sealed packet: replayed");
  Remember(key, sent_ms);
  plain.erase(0, 8);
  return plain;
}

// Keeps nonces for as long as their packets could still be accepted (the window either side of
// the sent time), and at most kReplayCacheEntries of them: legitimate traffic fills it only at
// about a thousand packets a second per node, and only a keyholder can add to it.
void PacketSealer::Remember(const std::string& nonce, int64_t sent_ms) {
  seen_.insert(nonce);
  seen_order_.emplace_back(sent_ms, nonce);
  // Saturating: a sent_ms within two windows of the int64 minimum keeps everything.
  const int64_t span = 2 * kPacketWindow.count();
  const int64_t horizon = sent_ms < std::numeric_limits<int64_t>::min() + span ? std::numeric_limits<int64_t>::min()
                                                                                : sent_ms - span;
  while (!seen_order_.empty() && (seen_order_.size() > kReplayCacheEntries || seen_order_.front().first < horizon)) {
    seen_.erase(seen_order_.front().second);
    seen_order_.pop_front();
  }
}

// ---- streams ----

StreamSeal::StreamSeal(std::shared_ptr<const Keyring> ring, std::string_view cluster)
    : ring_(std::move(ring)), send_(std::make_unique<CipherCtx>()), recv_(std::make_unique<CipherCtx>()) {
  info_.assign(kStreamInfo);
  info_.push_back('\0');
  info_ += cluster;
  my_nonce_.resize(kStreamNonceBytes);
  RandomBytes(U8(my_nonce_.data()), my_nonce_.size());
  preamble_.assign(kPreambleMagic);
  preamble_.push_back(static_cast<char>(kSealVersion));
  preamble_ += my_nonce_;
}

StreamSeal::~StreamSeal() = default;

Status StreamSeal::Start(std::string_view peer) {
  if (started_) return Status::Corruption("stream seal: a second preamble");
  if (peer.size() != kPreambleBytes || peer.substr(0, kPreambleMagic.size()) != kPreambleMagic)
    return Status::Corruption("stream seal: no preamble (the peer has no cluster key?)");
  if (static_cast<uint8_t>(peer[kPreambleMagic.size()]) != kSealVersion)
    return Status::Corruption("stream seal: version " + std::to_string(static_cast<uint8_t>(peer[6])));
  peer_nonce_.assign(peer.substr(kPreambleMagic.size() + 1));
  if (peer_nonce_ == my_nonce_) return Status::Corruption("stream seal: our own preamble reflected");
  Keyring::Key k;
  if (!Hkdf(ring_->primary(), my_nonce_ + peer_nonce_, info_, &k) ||
      EVP_EncryptInit_ex(send_->ctx, EVP_aes_256_gcm(), nullptr, k.data(), nullptr) != 1)
    return Status::IOError("stream seal: OpenSSL failed deriving a key");
  send_ikm_ = ring_->primary();
  started_ = true;
  return Status::Ok();
}

void StreamSeal::Seal(std::string* payload) {
  uint8_t nonce[kGcmNonceBytes];
  CounterNonce(send_counter_++, nonce);
  const size_t n = payload->size();
  payload->resize(n + kTagBytes);
  if (!Begin(send_->ctx, true, nullptr, nonce, {}) || !EncryptInPlace(send_->ctx, U8(payload->data()), n))
    payload->assign("");  // never sent in the clear: an empty frame fails to open on the other side
}

Status StreamSeal::Open(std::string* frame) {
  if (!started_) return Status::Corruption("stream seal: a sealed frame before the preamble");
  if (frame->size() < kTagBytes) return Status::Corruption("stream seal: frame shorter than its tag");
  const size_t n = frame->size() - kTagBytes;
  uint8_t nonce[kGcmNonceBytes];
  CounterNonce(recv_counter_, nonce);
  if (!recv_keyed_) {
    // The first frame names nothing: try each key (few) on a copy, keep the one that opens it.
    std::string plain(n, '\0');
    for (const Keyring::Key& ikm : ring_->keys()) {
      Keyring::Key k;
      if (!Hkdf(ikm, peer_nonce_ + my_nonce_, info_, &k)) continue;
      if (EVP_DecryptInit_ex(recv_->ctx, EVP_aes_256_gcm(), nullptr, k.data(), nullptr) != 1) continue;
      if (Begin(recv_->ctx, false, nullptr, nonce, {}) && Decrypt(recv_->ctx, U8(frame->data()), n, U8(plain.data()))) {
        recv_keyed_ = true;
        recv_ikm_ = ikm;
        ++recv_counter_;
        *frame = std::move(plain);
        return Status::Ok();
      }
    }
    return Status::Corruption("stream seal: the first frame opens under no key of ours");
  }
  if (!Begin(recv_->ctx, false, nullptr, nonce, {}) || !Decrypt(recv_->ctx, U8(frame->data()), n, U8(frame->data())))
    return Status::Corruption("stream seal: a frame does not authenticate");
  ++recv_counter_;
  frame->resize(n);
  return Status::Ok();
}

bool StreamSeal::KeyedWithin(const Keyring& ring) const {
  if (!started_) return true;
  return ring.Contains(send_ikm_) && (!recv_keyed_ || ring.Contains(recv_ikm_));
}

}  // namespace oklog::crypto
