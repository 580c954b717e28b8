// Keyring: the cluster's shared secret keys, read from `-cluster.key-file` (memberlist's
// keyring is the model). The file holds one key per line, each the base64 of 32 random bytes
// (`oklog keygen` prints one); blank lines and lines starting with '#' are ignored. The first
// key is the primary: this node seals everything it sends with it. Every key opens what
// arrives, so a rotation is: add the new key on every node (second line), make it primary on
// every node, then remove the old one — SIGHUP rereads the file each time.
//
// Thread: immutable once made; share it as shared_ptr<const Keyring> across threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace oklog::crypto {

class Keyring {
 public:
  static constexpr size_t kKeyBytes = 32;  // AES-256
  using Key = std::array<uint8_t, kKeyBytes>;

  // InvalidArgument naming the line for a key that is not base64 of exactly 32 bytes, and for
  // a text with no key. A repeated key is kept once (at its first place).
  static Result<std::shared_ptr<const Keyring>> Parse(std::string_view text);
  // NotFound / IOError for a file that cannot be read; then as Parse, with the path named.
  static Result<std::shared_ptr<const Keyring>> LoadFile(const std::string& path);
  // The base64 of 32 fresh random bytes (OpenSSL's RAND_bytes).
  static Result<std::string> Generate();

  const Key& primary() const { return keys_.front(); }
  const std::vector<Key>& keys() const { return keys_; }
  bool Contains(const Key& k) const;
  // A short public name of a key (the first 8 hex digits of its SHA-256), for logs.
  static std::string Fingerprint(const Key& k);

 private:
  std::vector<Key> keys_;
};

// Fills `n` bytes with OpenSSL's CSPRNG. Returns false (leaving them unspecified) only when
// OpenSSL cannot seed, which callers treat as fatal for sealing.
bool RandomBytes(uint8_t* out, size_t n);

}  // namespace oklog::crypto
