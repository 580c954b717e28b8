// Throwaway PKI for TLS tests, made with OpenSSL's API (no `openssl` binary): a CA, a server
// certificate for localhost / 127.0.0.1 / ::1 signed by it, a client certificate signed by it,
// and a second, unrelated CA with a client certificate of its own (one the server must refuse).
// Written as PEM files into a directory. EC P-256 keys: fast to make.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace oklog::testing {

struct TestPki {
  std::string dir;
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string other_ca, other_client_cert, other_client_key;  // a CA the server does not trust

  static TestPki Make(const std::string& dir) {
    TestPki p;
    p.dir = dir;
    Cert ca = Cert::Make("oklog test CA", nullptr, Kind::kCa);
    Cert server = Cert::Make("localhost", &ca, Kind::kServer);
    Cert client = Cert::Make("oklog test client", &ca, Kind::kClient);
    Cert other = Cert::Make("another CA", nullptr, Kind::kCa);
    Cert other_client = Cert::Make("stranger", &other, Kind::kClient);
    p.ca = ca.WriteCert(dir + "/ca.pem");
    p.server_cert = server.WriteCert(dir + "/server.pem");
    p.server_key = server.WriteKey(dir + "/server.key");
    p.client_cert = client.WriteCert(dir + "/client.pem");
    p.client_key = client.WriteKey(dir + "/client.key");
    p.other_ca = other.WriteCert(dir + "/other_ca.pem");
    p.other_client_cert = other_client.WriteCert(dir + "/other_client.pem");
    p.other_client_key = other_client.WriteKey(dir + "/other_client.key");
    return p;
  }

 private:
  enum class Kind { kCa, kServer, kClient };

  struct Cert {
    EVP_PKEY* key = nullptr;
    X509* x509 = nullptr;
    Cert() = default;
    Cert(Cert&& o) noexcept : key(o.key), x509(o.x509) { o.key = nullptr, o.x509 = nullptr; }
    Cert(const Cert&) = delete;
    ~Cert() {
      EVP_PKEY_free(key);
      X509_free(x509);
    }

    static void Ext(X509* cert, X509* issuer, int nid, const char* value) {
      X509V3_CTX ctx;
      X509V3_set_ctx_nodb(&ctx);
      X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
      if (ext == nullptr) throw std::runtime_error("X509V3_EXT_conf_nid");
      X509_add_ext(cert, ext, -1);
      X509_EXTENSION_free(ext);
    }

    static Cert Make(const std::string& cn, const Cert* issuer, Kind kind) {
      static long serial = 1;
      Cert c;
      c.key = EVP_EC_gen("P-256");
      c.x509 = X509_new();
      if (c.key == nullptr || c.x509 == nullptr) throw std::runtime_error("EVP_EC_gen / X509_new");
      X509_set_version(c.x509, 2);
      ASN1_INTEGER_set(X509_get_serialNumber(c.x509), serial++);
      X509_gmtime_adj(X509_getm_notBefore(c.x509), -3600);
      X509_gmtime_adj(X509_getm_notAfter(c.x509), 86400);
      X509_set_pubkey(c.x509, c.key);
      X509_NAME* name = X509_get_subject_name(c.x509);
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0);
      X509* signer = issuer != nullptr ? issuer->x509 : c.x509;
      X509_set_issuer_name(c.x509, X509_get_subject_name(signer));
      Ext(c.x509, signer, NID_subject_key_identifier, "hash");
      if (kind == Kind::kCa) {
        Ext(c.x509, signer, NID_basic_constraints, "critical,CA:TRUE");
        Ext(c.x509, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
      } else {
        Ext(c.x509, signer, NID_authority_key_identifier, "keyid");
        Ext(c.x509, signer, NID_basic_constraints, "critical,CA:FALSE");
        Ext(c.x509, signer, NID_key_usage, "critical,digitalSignature");
        Ext(c.x509, signer, NID_ext_key_usage, kind == Kind::kServer ? "serverAuth" : "clientAuth");
        if (kind == Kind::kServer) Ext(c.x509, signer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
      }
      EVP_PKEY* signing_key = issuer != nullptr ? issuer->key : c.key;
      if (X509_sign(c.x509, signing_key, EVP_sha256()) == 0) throw std::runtime_error("X509_sign");
      return c;
    }

    std::string WriteCert(const std::string& path) const {
      FILE* f = std::fopen(path.c_str(), "w");
      if (f == nullptr || PEM_write_X509(f, x509) != 1) throw std::runtime_error("writing " + path);
      std::fclose(f);
      return path;
    }
    std::string WriteKey(const std::string& path) const {
      FILE* f = std::fopen(path.c_str(), "w");
      if (f == nullptr || PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
        throw std::runtime_error("writing " + path);
      std::fclose(f);
      return path;
    }
  };
};

}  // namespace oklog::testing
