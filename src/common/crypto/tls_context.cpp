#include "common/crypto/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/metrics.h"

namespace oklog::crypto {
namespace {


Status Fail(const std::string& what) { return Status::InvalidArgument(what + ": " + TakeOpenSslErrors("unknown error")); }

}  // namespace

std::string TakeOpenSslErrors(const std::string& fallback) {
  std::string out;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? fallback : out;
}

Result<std::shared_ptr<const TlsContext>> TlsContext::Create(TlsRole role, const TlsOptions& o, Registry* metrics) {
  ERR_clear_error();
  if (o.cert_file.empty() != o.key_file.empty())
    return Status::InvalidArgument(o.cert_file.empty() ? "a TLS key without its certificate"
                                                       : "a TLS certificate without its key");
  if (role == TlsRole::kServer && o.cert_file.empty())
    return Status::InvalidArgument("a TLS server needs a certificate and a key");
  std::shared_ptr<TlsContext> c(new TlsContext(role, o));
  c->ctx_ = SSL_CTX_new(role == TlsRole::kServer ? TLS_server_method() : TLS_client_method());
  if (c->ctx_ == nullptr) return Fail("SSL_CTX_new");
  SSL_CTX* ctx = c->ctx_;
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return Fail("TLS 1.2 minimum");
  // No renegotiation (TLS 1.2): a client cannot make the server redo handshakes at will.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Idle connections (quiet live tails) give their record buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1) return Fail("certificate " + o.cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) return Fail("key " + o.key_file);
    if (SSL_CTX_check_private_key(ctx) != 1)
      return Fail("key " + o.key_file + " does not match certificate " + o.cert_file);
  }
  if (role == TlsRole::kServer) {
    if (!o.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) return Fail("client CA " + o.ca_file);
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca_file.c_str());
      if (names == nullptr) return Fail("client CA " + o.ca_file);
      SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    // No resumption: every connection does a full handshake, so a certificate revoked by
    // changing the CA file (at restart) is not resumed past. One TLS 1.3 ticket is still sent
    // (stateful, to a cache that is off: it can never resume): it is the client's sign that the
    // server accepted its certificate (TlsSession::peer_confirmed), since a TLS 1.3 client
    // finishes its handshake before the server has checked it.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 1);
  } else {
    if (!o.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) return Fail("CA " + o.ca_file);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return Fail("the system's trust store");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    // A ticket from the server marks it confirmed; the session itself is dropped (returning 0).
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, [](SSL* ssl, SSL_SESSION*) -> int {
      if (auto* seen = static_cast<bool*>(SSL_get_app_data(ssl)); seen != nullptr) *seen = true;
      return 0;
    });
  }
  if (metrics != nullptr) {
    c->failures_ = metrics
                       ->NewCounterFamily("oklog_tls_handshake_failures_total",
                                          "TLS handshakes that failed (bad or missing certificates, garbage, "
                                          "timeouts), by listener.",
                                          {"listener"})
                       ->With({o.listener});
  }
  return std::shared_ptr<const TlsContext>(std::move(c));
}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

void TlsContext::NoteHandshakeFailure(const std::string& peer, const std::string& reason) const {
  if (failures_ != nullptr) failures_->Inc();
  uint64_t unlogged = 0;
  if (!log_limit_.Allow(&unlogged)) return;
  std::string more = unlogged > 0 ? " (and " + std::to_string(unlogged) + " more since the last report)" : "";
  Logger("tls")->warn("msg=\"TLS handshake failed\" listener={} peer={} reason=\"{}\"{}", options_.listener, peer,
                      reason, more);
}

}  // namespace oklog::crypto
