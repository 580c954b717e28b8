#include "common/crypto/tls_session.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>

namespace oklog::crypto {
namespace {

constexpr size_t kReadSliceBytes = 16 * 1024;

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

Result<std::unique_ptr<TlsSession>> TlsSession::Create(std::shared_ptr<const TlsContext> ctx, std::string peer,
                                                       const std::string& verify_host) {
  ERR_clear_error();
  const bool server = ctx->role() == TlsRole::kServer;
  std::unique_ptr<TlsSession> s(new TlsSession(std::move(ctx), std::move(peer)));
  s->ssl_ = SSL_new(s->ctx_->ssl_ctx());
  if (s->ssl_ == nullptr) return Status::ResourceExhausted("SSL_new: " + TakeOpenSslErrors("out of memory"));
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (in == nullptr || out == nullptr) {
    BIO_free(in);
    BIO_free(out);
    return Status::ResourceExhausted("BIO_new: out of memory");
  }
  // An empty input BIO means "no more yet" (retry), never end of stream.
  BIO_set_mem_eof_return(in, -1);
  BIO_set_mem_eof_return(out, -1);
  SSL_set_bio(s->ssl_, in, out);  // ssl_ owns both now
  s->in_ = in;
  s->out_ = out;
  if (server) {
    SSL_set_accept_state(s->ssl_);
    return s;
  }
  SSL_set_connect_state(s->ssl_);
  SSL_set_app_data(s->ssl_, &s->ticket_seen_);
  if (!verify_host.empty()) {
    if (IsIpLiteral(verify_host)) {
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl_), verify_host.c_str()) != 1)
        return Status::InvalidArgument("TLS: cannot check the server's IP " + verify_host);
    } else {
      SSL_set_hostflags(s->ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (SSL_set1_host(s->ssl_, verify_host.c_str()) != 1 ||
          SSL_set_tlsext_host_name(s->ssl_, verify_host.c_str()) != 1)
        return Status::InvalidArgument("TLS: cannot check the server's name " + verify_host);
    }
  }
  OKLOG_RETURN_IF_ERROR(s->Pump(nullptr));  // the ClientHello
  return s;
}

TlsSession::~TlsSession() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees the BIOs
}

Status TlsSession::Failed(const std::string& reason) {
  std::string why = reason;
  if (ssl_ != nullptr) {
    long v = SSL_get_verify_result(ssl_);
    if (v != X509_V_OK) why += " (certificate: " + std::string(X509_verify_cert_error_string(v)) + ")";
  }
  error_ = Status::IOError("TLS with " + peer_ + ": " + why);
  held_.clear();
  // A server counts and logs what failed before the connection was established; a client's
  // owner reports its own error.
  if (!established_ && ctx_->role() == TlsRole::kServer) ctx_->NoteHandshakeFailure(peer_, why);
  return error_;
}

void TlsSession::NoteHandshakeTimeout() {
  if (established_ || failed()) return;
  (void)Failed("handshake timed out");
}

Status TlsSession::Encrypt(std::string_view plain) {
  while (!plain.empty()) {
    const int n = static_cast<int>(std::min<size_t>(plain.size(), INT_MAX / 2));
    ERR_clear_error();
    const int w = SSL_write(ssl_, plain.data(), n);
    if (w <= 0) return Failed("write: " + TakeOpenSslErrors("SSL_write failed"));
    plain.remove_prefix(static_cast<size_t>(w));
  }
  return Status::Ok();
}

Status TlsSession::Pump(std::string* plain) {
  if (!established_) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    if (r != 1) {
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Status::Ok();
      return Failed("handshake: " + TakeOpenSslErrors("peer closed or sent no TLS"));
    }
    established_ = true;
    if (!held_.empty()) {
      std::string held = std::move(held_);
      held_.clear();
      OKLOG_RETURN_IF_ERROR(Encrypt(held));
    }
  }
  if (plain == nullptr) return Status::Ok();
  char buf[kReadSliceBytes];
  for (;;) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      plain->append(buf, static_cast<size_t>(n));
      continue;
    }
    const int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Status::Ok();
    if (e == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      return Status::Ok();
    }
    return Failed("read: " + TakeOpenSslErrors("bad record"));
  }
}

Status TlsSession::Feed(std::string_view ciphertext, std::string* plain) {
  if (failed()) return error_;
  if (peer_closed_) return Status::Ok();  // nothing follows a close_notify
  while (!ciphertext.empty()) {
    const int n = static_cast<int>(std::min<size_t>(ciphertext.size(), INT_MAX / 2));
    const int w = BIO_write(in_, ciphertext.data(), n);
    if (w <= 0) return Failed("buffering input failed");
    ciphertext.remove_prefix(static_cast<size_t>(w));
  }
  return Pump(plain);
}

Status TlsSession::Write(std::string_view plain) {
  if (failed()) return error_;
  if (shut_) return Status::IOError("TLS with " + peer_ + ": write after shutdown");
  if (!established_) {
    if (held_.size() + plain.size() > kMaxHeldPlainBytes)
      return Status::ResourceExhausted("TLS with " + peer_ + ": too much written before the handshake completed");
    held_.append(plain);
    return Status::Ok();
  }
  return Encrypt(plain);
}

void TlsSession::Shutdown() {
  if (shut_ || failed()) return;
  shut_ = true;
  if (!established_) return;  // nothing to close cleanly: the owner just closes
  ERR_clear_error();
  SSL_shutdown(ssl_);  // queues close_notify; we do not wait for the peer's
  ERR_clear_error();
}

bool TlsSession::peer_confirmed() const {
  if (!established_ || failed()) return false;
  return SSL_version(ssl_) != TLS1_3_VERSION || ticket_seen_;
}

bool TlsSession::has_ciphertext() const { return BIO_ctrl_pending(out_) > 0; }

std::string TlsSession::TakeCiphertext() {
  std::string out;
  const size_t n = BIO_ctrl_pending(out_);
  if (n == 0) return out;
  out.resize(n);
  const int r = BIO_read(out_, out.data(), static_cast<int>(n));
  out.resize(r > 0 ? static_cast<size_t>(r) : 0);
  return out;
}

}  // namespace oklog::crypto
