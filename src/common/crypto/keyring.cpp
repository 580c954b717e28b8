#include "common/crypto/keyring.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace oklog::crypto {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Exactly 32 bytes from canonical base64 (44 characters, one '='), or false.
bool DecodeKey(std::string_view text, Keyring::Key* out) {
  if (text.size() != 44 || text[43] != '=' || text[42] == '=') return false;
  unsigned char buf[33];
  const int n = EVP_DecodeBlock(buf, reinterpret_cast<const unsigned char*>(text.data()), 44);
  if (n != 33) return false;  // EVP_DecodeBlock counts the padding as a zero byte
  std::memcpy(out->data(), buf, Keyring::kKeyBytes);
  return true;
}

}  // namespace

bool RandomBytes(uint8_t* out, size_t n) { return RAND_bytes(out, static_cast<int>(n)) == 1; }

Result<std::shared_ptr<const Keyring>> Keyring::Parse(std::string_view text) {
  auto ring = std::make_shared<Keyring>();
  int line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    Key k;
    if (!DecodeKey(line, &k))
      return Status::InvalidArgument("key file line " + std::to_string(line_no) +
                                     ": not the base64 of 32 bytes (make one with `oklog keygen`)");
    if (!ring->Contains(k)) ring->keys_.push_back(k);
  }
  if (ring->keys_.empty()) return Status::InvalidArgument("key file holds no key");
  return std::shared_ptr<const Keyring>(std::move(ring));
}

Result<std::shared_ptr<const Keyring>> Keyring::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int e = errno;
    if (e == ENOENT) return Status::NotFound("key file " + path + ": no such file");
    return Status::IOError("key file " + path + ": " + std::strerror(e));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError("key file " + path + ": read failed");
  Result<std::shared_ptr<const Keyring>> r = Parse(ss.str());
  if (!r.ok()) return Status::InvalidArgument(path + ": " + r.status().message());
  return r;
}

Result<std::string> Keyring::Generate() {
  Key k;
  if (!RandomBytes(k.data(), k.size())) return Status::IOError("keygen: no randomness from OpenSSL");
  unsigned char out[45];
  EVP_EncodeBlock(out, k.data(), static_cast<int>(k.size()));
  return std::string(reinterpret_cast<char*>(out), 44);
}

bool Keyring::Contains(const Key& k) const { return std::find(keys_.begin(), keys_.end(), k) != keys_.end(); }

std::string Keyring::Fingerprint(const Key& k) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(k.data(), k.size(), md, &len, EVP_sha256(), nullptr);
  char hex[9];
  std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
  return hex;
}

}  // namespace oklog::crypto
