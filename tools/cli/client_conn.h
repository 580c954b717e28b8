// ClientConn: a connected, blocking socket to an ingester, plain or TLS, with the calls
// `oklog forward` makes on it: Send/Recv/ShutdownWrite keep send(2)/recv(2)/shutdown(2)'s
// conventions (-1 with errno set), so the forwarding logic reads the same either way. With TLS
// a common/crypto TlsSession sits on the socket: Send encrypts and writes the whole record
// before it returns; Recv returns plaintext only (0 at EOF or the peer's close_notify; -1 with
// EAGAIN when MSG_DONTWAIT found no plaintext yet); ShutdownWrite sends close_notify first.
// Non-blocking sends (MSG_DONTWAIT, for `forward -bulk`'s poll loop): plaintext is taken (at
// most a record's worth) only while no ciphertext waits; what the socket does not take at once
// waits in has_pending_output() for FlushPending() (poll POLLOUT while it is there).
//
// Thread: one at a time. Owns the descriptor (closed by the destructor).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "common/crypto/tls_session.h"
#include "common/status.h"

namespace oklog {

class ClientConn {
 public:
  // Takes fd (connected, blocking). With tls, runs the handshake within timeout, checking the
  // server's certificate against host (a name or IP), and waits until the server has accepted
  // us (TlsSession::peer_confirmed: with TLS 1.3, its ticket, which oklog's listeners always
  // send); on failure fd is closed and the error (IOError or TimedOut, with TLS's reason)
  // returned.
  static Result<std::unique_ptr<ClientConn>> Open(int fd, std::shared_ptr<const crypto::TlsContext> tls,
                                                  const std::string& host, std::chrono::milliseconds timeout);
  ~ClientConn();
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;

  int fd() const { return fd_; }
  // Plaintext already decrypted and waiting (poll(2) on fd() cannot see it).
  bool has_buffered() const { return !plain_.empty(); }
  // flags: 0 (blocking) or MSG_DONTWAIT.
  ssize_t Send(const char* data, size_t n, int flags = 0);
  ssize_t Recv(char* buf, size_t n, int flags);
  // Ciphertext accepted but not yet written (TLS only).
  bool has_pending_output() const { return !out_.empty(); }
  // Writes waiting ciphertext without blocking; false (errno set) on a socket error.
  bool FlushPending();
  void ShutdownWrite();

 private:
  ClientConn(int fd, std::unique_ptr<crypto::TlsSession> tls) : fd_(fd), tls_(std::move(tls)) {}
  // Writes all waiting ciphertext, blocking; false with errno on failure.
  bool Flush();

  int fd_;
  std::unique_ptr<crypto::TlsSession> tls_;  // null: plain
  std::string plain_;                        // decrypted, not yet returned by Recv
  std::string out_;                          // encrypted, not yet written
};

}  // namespace oklog
