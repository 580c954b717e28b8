#include "tools/cli/client_conn.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace oklog {

Result<std::unique_ptr<ClientConn>> ClientConn::Open(int fd, std::shared_ptr<const crypto::TlsContext> tls,
                                                     const std::string& host, std::chrono::milliseconds timeout) {
  if (tls == nullptr) return std::unique_ptr<ClientConn>(new ClientConn(fd, nullptr));
  auto session = crypto::TlsSession::Create(std::move(tls), host, host);
  if (!session.ok()) {
    ::close(fd);
    return session.status();
  }
  std::unique_ptr<ClientConn> c(new ClientConn(fd, std::move(session).value()));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[16 * 1024];
  // Until the server has accepted us (TLS 1.3: its ticket), not just until our side finished: a
  // refused client certificate must fail here, before any line is taken as sent.
  while (!c->tls_->peer_confirmed()) {
    if (!c->Flush()) return Status::IOError("TLS with " + host + ": " + std::strerror(errno));
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::TimedOut("TLS with " + host + ": handshake timed out");
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IOError("TLS with " + host + ": closed during the handshake");
    Status s = c->tls_->Feed(std::string_view(buf, static_cast<size_t>(n)), &c->plain_);
    c->Flush();  // the alert of a failure too
    if (!s.ok()) return s;
  }
  if (!c->Flush()) return Status::IOError("TLS with " + host + ": " + std::strerror(errno));
  return c;
}

ClientConn::~ClientConn() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {
constexpr size_t kRecordBytes = 16 * 1024;  // a TLS record's plaintext at most
}  // namespace

bool ClientConn::Flush() {
  out_ += tls_->TakeCiphertext();
  size_t off = 0;
  while (off < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + off, out_.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  out_.clear();
  return true;
}

bool ClientConn::FlushPending() {
  if (tls_ == nullptr) return true;
  out_ += tls_->TakeCiphertext();
  while (!out_.empty()) {
    ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    out_.erase(0, static_cast<size_t>(n));
  }
  return true;
}

ssize_t ClientConn::Send(const char* data, size_t n, int flags) {
  if (tls_ == nullptr) return ::send(fd_, data, n, MSG_NOSIGNAL | flags);
  const bool nonblocking = (flags & MSG_DONTWAIT) != 0;
  if (nonblocking) {
    if (!FlushPending()) return -1;
    if (!out_.empty()) {
      errno = EAGAIN;
      return -1;
    }
    n = std::min(n, kRecordBytes);
  }
  if (!tls_->Write(std::string_view(data, n)).ok()) {
    errno = ECONNRESET;
    return -1;
  }
  if (nonblocking) return FlushPending() ? static_cast<ssize_t>(n) : -1;  // the rest waits in out_
  return Flush() ? static_cast<ssize_t>(n) : -1;
}

ssize_t ClientConn::Recv(char* buf, size_t n, int flags) {
  if (tls_ == nullptr) return ::recv(fd_, buf, n, flags);
  char cipher[16 * 1024];
  while (plain_.empty()) {
    if (tls_->peer_closed()) return 0;
    ssize_t r = ::recv(fd_, cipher, sizeof cipher, flags);
    if (r <= 0) return r;  // EOF, or -1 with errno (EAGAIN under MSG_DONTWAIT)
    Status s = tls_->Feed(std::string_view(cipher, static_cast<size_t>(r)), &plain_);
    if ((flags & MSG_DONTWAIT) != 0) FlushPending();
    else Flush();
    if (!s.ok()) {
      errno = ECONNRESET;
      return -1;
    }
    if (plain_.empty() && !tls_->peer_closed() && (flags & MSG_DONTWAIT) != 0) {
      errno = EAGAIN;
      return -1;
    }
  }
  const size_t k = std::min(n, plain_.size());
  std::memcpy(buf, plain_.data(), k);
  plain_.erase(0, k);
  return static_cast<ssize_t>(k);
}

void ClientConn::ShutdownWrite() {
  if (tls_ != nullptr) {
    tls_->Shutdown();
    Flush();
  }
  ::shutdown(fd_, SHUT_WR);
}

}  // namespace oklog
