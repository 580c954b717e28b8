// TlsContext: the certificates and settings of one TLS edge (a listener of the node, or a
// command-line client), an OpenSSL SSL_CTX built from PEM files. TLS 1.2 and 1.3 only, with
// OpenSSL's default cipher lists (no SSLv3, TLS 1.0/1.1, or NULL/export suites).
//
// Server: a certificate chain and its key; with a client CA every client must present a
// certificate that it signed (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT), or the
// handshake fails. Client: the CA to trust for the server's certificate (empty: the system's
// default store), and an optional certificate and key to present; the server's name (or IP) is
// checked against its certificate (TlsSession::Create's verify_host).
//
// Handshake failures (bad certificates, garbage, plain HTTP on a TLS port, timeouts) are counted
// in oklog_tls_handshake_failures_total{listener} and logged at most once per 10 s per context,
// with the number of failures since the last line: a scan of the port cannot flood the log.
//
// Thread: immutable once made, except the failure counter and log limiter (locked): share it as
// shared_ptr<const TlsContext> among connections and threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "common/log.h"
#include "common/status.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX, kept out of this header

namespace oklog {

class Counter;
class Registry;

namespace crypto {

enum class TlsRole { kServer, kClient };

struct TlsOptions {
  std::string cert_file;  // PEM chain (leaf first); required for a server
  std::string key_file;   // PEM private key of cert_file; required with cert_file
  // Server: the CA of client certificates (set: they are required). Client: the CA that signs
  // the server's certificate (empty: the system's default trust store).
  std::string ca_file;
  // A name for metrics and logs: "api", "ingest", or "client".
  std::string listener = "client";
  // A server closes a connection whose handshake has not completed in this time.
  std::chrono::milliseconds handshake_timeout{10000};
};

class TlsContext {
 public:
  // InvalidArgument naming the file and OpenSSL's reason for an unreadable or mismatched
  // certificate, key or CA; a server without cert_file/key_file, or a key without its
  // certificate (or the reverse), is InvalidArgument too. metrics may be null; otherwise it must
  // outlive the context.
  static Result<std::shared_ptr<const TlsContext>> Create(TlsRole role, const TlsOptions& options, Registry* metrics);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  TlsRole role() const { return role_; }
  const TlsOptions& options() const { return options_; }
  bool requires_client_cert() const { return role_ == TlsRole::kServer && !options_.ca_file.empty(); }
  ssl_ctx_st* ssl_ctx() const { return ctx_; }

  // Counts one failed handshake and logs it (rate-limited) with the peer and the reason.
  void NoteHandshakeFailure(const std::string& peer, const std::string& reason) const;

 private:
  TlsContext(TlsRole role, TlsOptions options) : role_(role), options_(std::move(options)) {}

  TlsRole role_;
  TlsOptions options_;
  ssl_ctx_st* ctx_ = nullptr;
  Counter* failures_ = nullptr;
  mutable LogLimiter log_limit_;  // handshake failures: one report per 10 s
};

// The last OpenSSL errors of this thread as one line (and the queue cleared); `fallback` when
// there are none.
std::string TakeOpenSslErrors(const std::string& fallback);

}  // namespace crypto
}  // namespace oklog
