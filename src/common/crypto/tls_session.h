// TlsSession: one TLS connection as a byte engine between a socket and its consumer, on two
// OpenSSL memory BIOs (SSL_set_bio), with no I/O of its own. The owner of the socket (an HTTP
// connection, an ingest connection) keeps its libuv reads and writes:
//
//   uv_read  → Feed(ciphertext, &plain) → plain to the existing consumer
//   consumer → Write(plain)             → TakeCiphertext() → uv_write (the request owns it)
//   Feed also produces ciphertext (handshake records, alerts): send TakeCiphertext() after it.
//
// The handshake runs inside Feed (and, for a client, at Create). Plaintext written before it
// completes is held (at most kMaxHeldPlainBytes) and encrypted when it does. A failed handshake
// is noted on the context (counted, logged rate-limited) once; any failure leaves the session
// failed (Feed and Write return the error again), and the owner closes the socket after sending
// what TakeCiphertext() holds (the alert). Garbage never crashes: OpenSSL reports it as an error.
//
// Buffers are bounded: Feed consumes all it is given (what remains inside OpenSSL is at most a
// partial record, < 17 KiB) and returns at most about that much plaintext; ciphertext waits in
// the outgoing BIO only until TakeCiphertext().
//
// Thread: one thread at a time (the loop thread of its connection).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/crypto/tls_context.h"
#include "common/status.h"

struct ssl_st;
struct bio_st;

namespace oklog::crypto {

class TlsSession {
 public:
  static constexpr size_t kMaxHeldPlainBytes = 4 << 20;

  // A server session (the context's role) or a client one; a client starts its handshake here
  // (send TakeCiphertext()). verify_host (client only): the name or IP literal the server's
  // certificate must match; empty: not checked. peer names the other side in logs.
  static Result<std::unique_ptr<TlsSession>> Create(std::shared_ptr<const TlsContext> ctx, std::string peer,
                                                    const std::string& verify_host = "");
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Ciphertext read from the socket; the plaintext it carries is appended to *plain. Errors
  // (IOError, with OpenSSL's reason): a failed handshake, a bad record, a peer's fatal alert.
  Status Feed(std::string_view ciphertext, std::string* plain);
  // Encrypts plain for the peer (held until the handshake completes). ResourceExhausted when
  // more than kMaxHeldPlainBytes would be held; the session's error once failed.
  Status Write(std::string_view plain);
  // Queues a close_notify alert (send TakeCiphertext() before the TCP shutdown). No-op when
  // failed or already shut down.
  void Shutdown();
  // The ciphertext produced so far, to send in order; empty when none.
  std::string TakeCiphertext();
  bool has_ciphertext() const;

  bool established() const { return established_; }
  // Client: the server has accepted us: with TLS 1.2 once established; with TLS 1.3 (where the
  // client finishes first and a refused client certificate shows only as a later alert) once
  // the server's first ticket arrived (TlsContext makes servers send one).
  bool peer_confirmed() const;
  bool failed() const { return !error_.ok(); }
  // The peer sent close_notify: the clean end of its stream (treat as EOF).
  bool peer_closed() const { return peer_closed_; }
  // Called by the owner when its handshake deadline passes before established(): counted and
  // logged as a failure, and the session fails.
  void NoteHandshakeTimeout();

 private:
  TlsSession(std::shared_ptr<const TlsContext> ctx, std::string peer) : ctx_(std::move(ctx)), peer_(std::move(peer)) {}
  // Runs SSL_do_handshake / SSL_read / held writes as far as the input allows.
  Status Pump(std::string* plain);
  Status Failed(const std::string& reason);
  Status Encrypt(std::string_view plain);

  std::shared_ptr<const TlsContext> ctx_;
  std::string peer_;
  ssl_st* ssl_ = nullptr;
  bio_st* in_ = nullptr;   // ciphertext from the peer (owned by ssl_)
  bio_st* out_ = nullptr;  // ciphertext to the peer (owned by ssl_)
  std::string held_;       // plaintext written before the handshake completed
  bool established_ = false;
  bool peer_closed_ = false;
  bool shut_ = false;
  bool ticket_seen_ = false;  // set by the client context's new-session callback (app data)
  Status error_;
};

}  // namespace oklog::crypto
