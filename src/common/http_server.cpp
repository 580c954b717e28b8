#include "common/http_server.h"

#include <algorithm>
#include <charconv>
#include <csignal>
#include <chrono>
#include <cstring>
#include <set>

#include "common/http_request_parser.h"
#include "common/crypto/tls_session.h"
#include "common/log.h"
#include "common/memory_budget.h"
#include "common/metrics.h"
#include "common/uv/check.h"
#include "common/uv/tcp_listener.h"

namespace oklog {
namespace {

constexpr size_t kLowWaterBytes = 256 * 1024;
constexpr size_t kReadBufferBytes = 64 * 1024;
// While a response is in progress the next request is not parsed, but reading goes on (so a
// client that hangs up is noticed even when the response is quiet) until this much is queued.
constexpr size_t kMaxReadAheadBytes = 64 * 1024;
// Pipelined requests are parsed only while less than this is queued for the client: one that
// sends requests and never reads their answers holds at most this (plus one answer), then its
// connection stops being read until the answers drain (or the idle timeout closes it).
constexpr size_t kPipelineHighWaterBytes = 1024 * 1024;
// After "Connection: close" responses: how long unread input is drained before closing, so the
// client is not sent a reset that could destroy the response it has not read yet.
constexpr uint64_t kMaxLingerMs = 2000;

using Clock = std::chrono::steady_clock;

// What a page of an allowed origin may read of a response besides the CORS-safelisted headers.
constexpr const char* kExposedHeaders =
    "X-Oklog-From, X-Oklog-To, X-Oklog-Q, X-Oklog-Regex, X-Oklog-Nodes-Queried, X-Oklog-Segments-Queried, "
    "X-Oklog-Max-Data-Set-Size, X-Oklog-Error-Count, X-Oklog-Duration";

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ::tolower(x) == ::tolower(y); });
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool HasCrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

// The bounded set of method label values.
std::string MethodLabel(std::string_view m) {
  static const char* kKnown[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
  for (const char* k : kKnown) {
    if (m == k) return k;
  }
  return "other";
}


class ServerImpl;
class Connection;

// A write request owns every byte it sends; OnWrite (which always runs) is its one release point.
struct WriteReq {
  uv_write_t req;
  std::string prefix;  // response head and/or chunk-size line
  std::string data;
  size_t bytes = 0;
};

struct ResponseInfo {
  bool head = false;
  std::string cors_allow;  // the Access-Control-Allow-Origin value; empty: none
  bool cors_vary = false;  // CORS is configured: Vary: Origin
  bool http11 = true;
  bool keep_alive = true;
  Family<Histogram>* durations = nullptr;
  std::string method_label;
  std::string path_label;
  Clock::time_point start;
};

class ResponseImpl final : public HttpResponse {
 public:
  ResponseImpl(Connection* conn, ResponseInfo info) : conn_(conn), info_(std::move(info)) {}
  void Start(int status, const Headers& headers) override;
  bool Write(std::string data) override;
  void Finish() override;
  void Abort(const std::string& reason) override;
  size_t buffered_bytes() const override;
  void OnDrain(std::function<void()> cb) override {
    if (!closed_) on_drain_ = std::move(cb);
  }
  void OnClose(std::function<void()> cb) override;
  bool closed() const override { return closed_; }
  bool is_head() const override { return info_.head; }

  bool started() const { return started_; }
  // The connection is going away: writes are dropped from now on; fires the on-close callback.
  void Detach();
  void MaybeFireDrain();

 private:
  void End();

  Connection* conn_;  // null once finished or detached
  ResponseInfo info_;
  bool started_ = false;
  bool closed_ = false;
  bool chunked_ = false;
  bool no_body_ = false;
  bool must_close_ = false;
  bool drain_wanted_ = false;
  bool has_length_ = false;
  uint64_t content_length_ = 0;
  uint64_t body_written_ = 0;
  std::string head_pending_;  // the head, held back to go out with the first body bytes
  int status_ = 0;
  std::function<void()> on_drain_;
  std::function<void()> on_close_;
};

// One accepted TCP connection: a uv_tcp_t and an idle timer. Deleted by itself in the close
// callback of the last of its two handles, never elsewhere. Loop thread only.
class Connection {
 public:
  explicit Connection(ServerImpl* server);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool Accept(TcpListener* listener);
  // Closes at once; queued writes are cancelled; an in-flight response sees closed().
  void CloseNow();
  void ForgetServer() { server_ = nullptr; }

  // For ResponseImpl. QueueWrite returns false (and the connection closes) when libuv refuses.
  bool QueueWrite(std::string prefix, std::string data, bool crlf_suffix);
  void ResponseFinished(bool keep_alive);
  size_t pending_write_bytes() const { return pending_write_bytes_; }

 private:
  enum class State { kOpen, kShuttingDown, kLingering, kClosed };

  static void OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void OnWrite(uv_write_t* req, int status) noexcept;
  static void OnShutdown(uv_shutdown_t* req, int status) noexcept;
  static void OnTimer(uv_timer_t* t) noexcept;
  static void OnHandleClosed(uv_handle_t* h) noexcept;

  void HandleRead(ssize_t nread, const uv_buf_t* buf);
  void HandlePlain(const char* data, size_t n);
  void HandleTlsRead(const char* data, size_t n);
  void HandleEof();
  // uv_write of w's buffers (the request owns them); false (and closed) when libuv refuses.
  bool StartWrite(std::unique_ptr<WriteReq> w, uv_buf_t* bufs, unsigned n);
  // Sends what the TLS session has encrypted; plain_bytes is the plaintext it stands for
  // (counted in pending_write_bytes_). False (and closed) on failure.
  bool SendTls(size_t plain_bytes);
  void HandleWriteDone(WriteReq* w, int status);
  void StartReading();
  void StopReading();
  void RestartTimer(uint64_t ms);
  void ProcessInput();
  void Dispatch();
  void RespondError(int status, std::string_view detail);
  void StartGracefulClose();
  ResponseInfo MakeInfo(bool head, bool keep_alive) const;

  ServerImpl* server_;
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  uv_shutdown_t shutdown_req_;
  int open_handles_ = 0;
  State state_ = State::kOpen;
  bool reading_ = false;
  bool eof_ = false;
  bool processing_ = false;
  std::string peer_;

  HttpRequestParser parser_;
  HttpRequest& request_;  // parser_.request()
  std::string input_;  // received, not yet parsed
  size_t input_pos_ = 0;
  std::unique_ptr<crypto::TlsSession> tls_;  // null: plain TCP

  std::shared_ptr<ResponseImpl> current_;
  size_t pending_write_bytes_ = 0;
};

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(uv_loop_t* loop, Options options, Registry* metrics);
  ~ServerImpl() override;
  Status Listen(const Address& addr);

  void Handle(const std::string& path_prefix, HttpHandler handler) override { routes_[path_prefix] = std::move(handler); }
  void SetGuard(Guard guard) override { guard_ = std::move(guard); }
  const Guard& guard() const { return guard_; }
  std::string BoundAddress() const override { return bound_; }
  uint16_t port() const override { return port_; }
  void Close() override;
  bool done() const override { return closing_ && (listener_ == nullptr || listener_->done()) && conns_.empty(); }

  // For connections.
  uv_loop_t* loop() const { return loop_; }
  const Options& options() const { return options_; }
  char* read_buffer() { return read_buffer_.get(); }
  // The handler of the longest registered prefix of path, or null; *label gets the prefix or "other".
  const HttpHandler* FindRoute(const std::string& path, std::string* label) const;
  Family<Histogram>* durations() const { return durations_; }
  void CountBadRequest() {
    if (bad_requests_ != nullptr) bad_requests_->Inc();
  }
  void Forget(Connection* c) { conns_.erase(c); }

 private:
  void OnConnection(TcpListener* listener, int status);

  uv_loop_t* loop_;
  Options options_;
  std::unique_ptr<TcpListener> listener_;
  bool closing_ = false;
  std::map<std::string, HttpHandler> routes_;
  Guard guard_;
  std::set<Connection*> conns_;
  std::unique_ptr<char[]> read_buffer_;
  std::string bound_;
  uint16_t port_ = 0;
  Family<Histogram>* durations_ = nullptr;
  Counter* bad_requests_ = nullptr;
  Counter* capped_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// ResponseImpl

void ResponseImpl::Start(int status, const Headers& headers) {
  if (started_ || closed_) return;
  started_ = true;
  status_ = status;
  no_body_ = info_.head || status / 100 == 1 || status == 204 || status == 304;
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + ReasonPhrase(status) + "\r\n";
  bool has_cors = false;
  for (const auto& [name, value] : headers) {
    if (name.empty() || HasCrLf(name) || HasCrLf(value)) {
      Logger("http")->warn("msg=\"dropping invalid response header\" name=\"{}\"", name);
      continue;
    }
    if (IEquals(name, "Content-Length")) {
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), content_length_);
      has_length_ = ec == std::errc() && ptr == value.data() + value.size();
      continue;  // written below, normalised
    }
    if (IEquals(name, "Transfer-Encoding")) continue;  // framing is the server's business
    if (IEquals(name, "Connection")) {
      if (IEquals(value, "close")) info_.keep_alive = false;
      continue;
    }
    if (IEquals(name, "Access-Control-Allow-Origin")) has_cors = true;
    h += name + ": " + value + "\r\n";
  }
  if (has_length_) h += "Content-Length: " + std::to_string(content_length_) + "\r\n";
  if (!has_cors && !info_.cors_allow.empty()) {
    h += "Access-Control-Allow-Origin: " + info_.cors_allow + "\r\n";
    h += "Access-Control-Expose-Headers: " + std::string(kExposedHeaders) + "\r\n";
  }
  if (info_.cors_vary) h += "Vary: Origin\r\n";
  if (!has_length_ && !no_body_) {
    if (info_.http11) {
      chunked_ = true;
      h += "Transfer-Encoding: chunked\r\n";
    } else {
      info_.keep_alive = false;  // HTTP/1.0: the body ends when the connection closes
    }
  }
  if (!info_.keep_alive) {
    h += "Connection: close\r\n";
  } else if (!info_.http11) {
    h += "Connection: keep-alive\r\n";
  }
  h += "\r\n";
  if (has_length_ && content_length_ > 0 && !no_body_) {
    head_pending_ = std::move(h);  // one write for small whole responses (Send)
  } else {
    conn_->QueueWrite(std::move(h), std::string(), false);
  }
}

bool ResponseImpl::Write(std::string data) {
  if (closed_) return false;
  if (!started_) Start(200, {});
  if (closed_) return false;
  if (no_body_ || data.empty()) return true;  // HEAD: dropped, framing already correct
  if (has_length_) {
    uint64_t room = content_length_ - body_written_;
    if (data.size() > room) {
      Logger("http")->warn("msg=\"response body longer than its Content-Length; truncated\" length={}",
                           content_length_);
      data.resize(room);
      must_close_ = true;
      if (data.empty()) return true;
    }
  }
  body_written_ += data.size();
  drain_wanted_ = true;
  std::string prefix = std::move(head_pending_);
  head_pending_.clear();
  if (chunked_) {
    char hex[24];
    auto [end, ec] = std::to_chars(hex, hex + sizeof(hex), data.size(), 16);
    prefix.append(hex, end);
    prefix += "\r\n";
  }
  return conn_->QueueWrite(std::move(prefix), std::move(data), chunked_);
}

void ResponseImpl::Finish() {
  if (closed_) return;
  if (!started_) Start(200, {{"Content-Length", "0"}});
  if (closed_) return;
  std::string tail = std::move(head_pending_);
  if (chunked_) tail += "0\r\n\r\n";
  if (!tail.empty() && !conn_->QueueWrite(std::move(tail), std::string(), false)) return;
  if (has_length_ && !no_body_ && body_written_ < content_length_) must_close_ = true;  // the client sees a short body
  bool keep_alive = info_.keep_alive && !must_close_;
  Connection* conn = conn_;
  conn_ = nullptr;
  End();
  conn->ResponseFinished(keep_alive);  // last: this response may be released here
}

void ResponseImpl::Abort(const std::string& reason) {
  if (closed_) return;
  if (!started_) {
    Start(500, {{"Content-Type", "text/plain; charset=utf-8"}, {"Connection", "close"}});
    Write(reason + "\n");
    return Finish();
  }
  std::string tail = std::move(head_pending_);  // bytes already promised go out; no last chunk
  if (!tail.empty() && !conn_->QueueWrite(std::move(tail), std::string(), false)) return;
  Connection* conn = conn_;
  conn_ = nullptr;
  End();
  conn->ResponseFinished(false);  // closes once the queued writes are out
}

size_t ResponseImpl::buffered_bytes() const { return conn_ != nullptr ? conn_->pending_write_bytes() : 0; }

void ResponseImpl::OnClose(std::function<void()> cb) {
  if (closed_) {
    if (cb) cb();
    return;
  }
  on_close_ = std::move(cb);
}

void ResponseImpl::Detach() {
  conn_ = nullptr;
  if (!closed_) End();
}

void ResponseImpl::MaybeFireDrain() {
  if (closed_ || !drain_wanted_ || !on_drain_) return;
  drain_wanted_ = false;
  auto cb = on_drain_;  // a copy: the callback may replace itself
  cb();
}

void ResponseImpl::End() {
  closed_ = true;
  if (info_.durations != nullptr) {
    double secs = std::chrono::duration<double>(Clock::now() - info_.start).count();
    info_.durations->With({info_.method_label, info_.path_label, std::to_string(status_)})->Observe(secs);
  }
  on_drain_ = nullptr;  // callbacks often hold this response: break the cycle
  auto cb = std::move(on_close_);
  on_close_ = nullptr;
  if (cb) cb();
}

// ---------------------------------------------------------------------------------------------
// Connection

Connection::Connection(ServerImpl* server)
    : server_(server),
      parser_({server->options().max_header_bytes, server->options().max_body_bytes,
               server->options().memory_budget}),
      request_(parser_.request()) {
  parser_.OnContinue([this] { QueueWrite("HTTP/1.1 100 Continue\r\n\r\n", std::string(), false); });
  // An upload in progress is not idle.
  parser_.OnBodyBytes([this] { RestartTimer(server_->options().idle_timeout_ms); });
}

bool Connection::Accept(TcpListener* listener) {
  OKLOG_UV_CHECK(uv_tcp_init(server_->loop(), &tcp_));
  OKLOG_UV_CHECK(uv_timer_init(server_->loop(), &timer_));
  tcp_.data = this;
  timer_.data = this;
  open_handles_ = 2;
  if (int r = listener->Accept(reinterpret_cast<uv_stream_t*>(&tcp_)); r < 0) {
    Logger("http")->warn("msg=\"accept failed\" err=\"{}\"", uv_strerror(r));
    CloseNow();
    return false;
  }
  uv_tcp_nodelay(&tcp_, 1);  // heads and bodies go out as separate writes; no Nagle stalls
  sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer_ = SockaddrToString(reinterpret_cast<sockaddr*>(&ss));
  }
  uint64_t first_deadline_ms = server_->options().idle_timeout_ms;
  if (server_->options().tls != nullptr) {
    auto session = crypto::TlsSession::Create(server_->options().tls, peer_);
    if (!session.ok()) {
      Logger("http")->warn("msg=\"TLS session refused\" peer={} err=\"{}\"", peer_, session.status().ToString());
      CloseNow();
      return false;
    }
    tls_ = std::move(session).value();
    // Until the handshake completes the (shorter) handshake deadline applies.
    first_deadline_ms = std::min<uint64_t>(first_deadline_ms, server_->options().tls->options().handshake_timeout.count());
  }
  RestartTimer(first_deadline_ms);
  StartReading();
  return true;
}

void Connection::CloseNow() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  if (current_ != nullptr) {
    auto resp = std::move(current_);
    resp->Detach();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), OnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), OnHandleClosed);
}

void Connection::OnHandleClosed(uv_handle_t* h) noexcept {
  auto* c = static_cast<Connection*>(h->data);
  if (--c->open_handles_ > 0) return;
  if (c->server_ != nullptr) c->server_->Forget(c);
  delete c;
}

void Connection::StartReading() {
  if (reading_ || state_ == State::kClosed || eof_) return;
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), OnAlloc, OnRead) == 0) reading_ = true;
}

void Connection::StopReading() {
  if (!reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

void Connection::RestartTimer(uint64_t ms) { uv_timer_start(&timer_, OnTimer, ms, 0); }

void Connection::OnAlloc(uv_handle_t* h, size_t /*suggested*/, uv_buf_t* buf) noexcept {
  // One buffer serves every connection: a read callback consumes its bytes before returning.
  auto* c = static_cast<Connection*>(h->data);
  if (c == nullptr || c->server_ == nullptr) {
    *buf = uv_buf_init(nullptr, 0);  // the read callback gets UV_ENOBUFS and closes
    return;
  }
  *buf = uv_buf_init(c->server_->read_buffer(), kReadBufferBytes);
}

void Connection::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* c = static_cast<Connection*>(s->data);
  if (c != nullptr) c->HandleRead(nread, buf);
}

void Connection::HandleRead(ssize_t nread, const uv_buf_t* buf) {
  if (nread == 0) return;  // nothing read (EAGAIN); not EOF
  if (nread == UV_EOF) return HandleEof();
  if (nread < 0) return CloseNow();  // reset, ENOBUFS, ...
  if (state_ != State::kOpen) return;  // shutting down or lingering: input is discarded
  if (tls_ != nullptr) return HandleTlsRead(buf->base, static_cast<size_t>(nread));
  HandlePlain(buf->base, static_cast<size_t>(nread));
}

void Connection::HandleTlsRead(const char* data, size_t n) {
  const bool was_established = tls_->established();
  std::string plain;
  Status s = tls_->Feed(std::string_view(data, n), &plain);
  if (!SendTls(0)) return;  // handshake records, or the alert of a failure
  if (!s.ok()) {
    Logger("http")->debug("msg=\"closing TLS connection\" peer={} err=\"{}\"", peer_, s.ToString());
    return StartGracefulClose();  // the alert goes out first
  }
  if (!was_established && tls_->established()) RestartTimer(server_->options().idle_timeout_ms);
  if (!plain.empty()) HandlePlain(plain.data(), plain.size());
  if (tls_ != nullptr && tls_->peer_closed() && state_ == State::kOpen && !eof_) HandleEof();  // close_notify
}

void Connection::HandlePlain(const char* data, size_t n) {
  if (state_ != State::kOpen) return;
  input_.append(data, n);
  if (current_ != nullptr || pending_write_bytes_ >= kPipelineHighWaterBytes) {
    if (input_.size() - input_pos_ > kMaxReadAheadBytes) StopReading();
    return;
  }
  ProcessInput();
}

void Connection::HandleEof() {
  eof_ = true;
  StopReading();
  switch (state_) {
    case State::kOpen:
      // A client that hangs up while its response is in progress has gone (as Go's
      // CloseNotifier decided for OK Log's streams); between requests, flush what is queued.
      if (current_ != nullptr) return CloseNow();
      return StartGracefulClose();
    case State::kShuttingDown: return;  // the shutdown callback closes
    case State::kLingering: return CloseNow();
    case State::kClosed: return;
  }
}

void Connection::OnTimer(uv_timer_t* t) noexcept {
  auto* c = static_cast<Connection*>(t->data);
  if (c == nullptr || c->state_ == State::kClosed) return;
  // A quiet response (a live tail with nothing to say) is not idle; a stalled write is.
  if (c->state_ == State::kOpen && c->current_ != nullptr && c->pending_write_bytes_ == 0) return;
  if (c->tls_ != nullptr && !c->tls_->established()) {
    c->tls_->NoteHandshakeTimeout();
  } else {
    Logger("http")->debug("msg=\"closing idle connection\" peer={}", c->peer_);
  }
  c->CloseNow();
}

bool Connection::QueueWrite(std::string prefix, std::string data, bool crlf_suffix) {
  if (state_ == State::kClosed) return false;
  if (tls_ != nullptr) {
    Status s = tls_->Write(prefix);
    if (s.ok()) s = tls_->Write(data);
    if (s.ok() && crlf_suffix) s = tls_->Write("\r\n");
    if (!s.ok()) {
      Logger("http")->debug("msg=\"TLS write failed\" peer={} err=\"{}\"", peer_, s.ToString());
      CloseNow();
      return false;
    }
    return SendTls(prefix.size() + data.size() + (crlf_suffix ? 2 : 0));
  }
  auto w = std::make_unique<WriteReq>();
  w->prefix = std::move(prefix);
  w->data = std::move(data);
  uv_buf_t bufs[3];
  unsigned n = 0;
  if (!w->prefix.empty()) bufs[n++] = uv_buf_init(w->prefix.data(), w->prefix.size());
  if (!w->data.empty()) bufs[n++] = uv_buf_init(w->data.data(), w->data.size());
  static char kCrLf[] = "\r\n";
  if (crlf_suffix) bufs[n++] = uv_buf_init(kCrLf, 2);
  if (n == 0) return true;
  w->bytes = w->prefix.size() + w->data.size() + (crlf_suffix ? 2 : 0);
  return StartWrite(std::move(w), bufs, n);
}

bool Connection::SendTls(size_t plain_bytes) {
  if (state_ == State::kClosed) return false;
  auto w = std::make_unique<WriteReq>();
  w->data = tls_->TakeCiphertext();
  if (w->data.empty()) return true;
  w->bytes = plain_bytes;
  uv_buf_t buf = uv_buf_init(w->data.data(), w->data.size());
  return StartWrite(std::move(w), &buf, 1);
}

bool Connection::StartWrite(std::unique_ptr<WriteReq> w, uv_buf_t* bufs, unsigned n) {
  w->req.data = w.get();
  if (int r = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), bufs, n, OnWrite); r < 0) {
    Logger("http")->debug("msg=\"write refused\" peer={} err=\"{}\"", peer_, uv_strerror(r));
    CloseNow();
    return false;
  }
  pending_write_bytes_ += w->bytes;
  if (MemoryBudget* b = server_->options().memory_budget) b->Charge(w->bytes);
  w.release();  // OnWrite frees it
  if (state_ == State::kOpen && current_ != nullptr && !uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_))) {
    RestartTimer(server_->options().idle_timeout_ms);  // write-stall deadline
  }
  return true;
}

void Connection::OnWrite(uv_write_t* req, int status) noexcept {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
  // The connection outlives its write requests: their callbacks run before its close callbacks.
  auto* c = static_cast<Connection*>(req->handle->data);
  c->HandleWriteDone(w.get(), status);
}

void Connection::HandleWriteDone(WriteReq* w, int status) {
  pending_write_bytes_ -= w->bytes;
  if (MemoryBudget* b = server_->options().memory_budget) b->Release(w->bytes);
  if (status < 0) {
    if (status != UV_ECANCELED) CloseNow();  // the client has gone
    return;
  }
  if (tls_ != nullptr && !tls_->established()) return;  // handshake records: the handshake deadline stands
  if (state_ == State::kClosed || state_ == State::kLingering) return;
  if (current_ != nullptr && pending_write_bytes_ == 0) {
    uv_timer_stop(&timer_);
  } else {
    RestartTimer(server_->options().idle_timeout_ms);  // progress
  }
  if (current_ != nullptr && pending_write_bytes_ < kLowWaterBytes) {
    auto resp = current_;  // the drain callback may finish it
    resp->MaybeFireDrain();
  } else if (current_ == nullptr && state_ == State::kOpen && pending_write_bytes_ < kLowWaterBytes) {
    ProcessInput();  // pipelined requests held back while answers were queued
  }
}

void Connection::ResponseFinished(bool keep_alive) {
  auto finished = std::move(current_);
  if (state_ != State::kOpen) return;
  if (!keep_alive) return StartGracefulClose();
  RestartTimer(server_->options().idle_timeout_ms);
  StartReading();
  ProcessInput();
}

void Connection::StartGracefulClose() {
  if (state_ != State::kOpen) return;
  state_ = State::kShuttingDown;
  input_.clear();
  input_pos_ = 0;
  if (tls_ != nullptr) {
    tls_->Shutdown();  // close_notify, queued before the TCP shutdown
    if (!SendTls(0)) return;
  }
  shutdown_req_.data = this;
  if (uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), OnShutdown) < 0) return CloseNow();
  RestartTimer(server_->options().idle_timeout_ms);  // bounds a client that stops reading
}

void Connection::OnShutdown(uv_shutdown_t* req, int status) noexcept {
  auto* c = static_cast<Connection*>(req->data);
  if (c->state_ != State::kShuttingDown) return;  // closed meanwhile (status is UV_ECANCELED)
  if (status < 0 || c->eof_) return c->CloseNow();
  c->state_ = State::kLingering;
  c->StartReading();
  c->RestartTimer(std::min(kMaxLingerMs, c->server_->options().idle_timeout_ms));
}

// ---------------------------------------------------------------------------------------------
// Request parsing (HttpRequestParser): one request at a time, the rest waits in input_.

void Connection::ProcessInput() {
  if (processing_) return;  // re-entered through a handler that finished at once: the loop below goes on
  processing_ = true;
  while (state_ == State::kOpen && current_ == nullptr && input_pos_ < input_.size() &&
         pending_write_bytes_ < kPipelineHighWaterBytes) {
    size_t len = input_.size() - input_pos_;
    const HttpRequestParser::Step step = parser_.Execute(input_.data() + input_pos_, len);
    size_t n = step.consumed;
    input_pos_ += n;
    if (step.error_status != 0) {
      RespondError(step.error_status, step.error_detail);
    } else if (step.request) {
      request_.peer = peer_;
      Dispatch();
    } else if (n == len) {
      break;  // need more bytes
    }
  }
  if (input_pos_ >= input_.size()) {
    input_.clear();
    input_pos_ = 0;
  } else if (input_pos_ > 0) {
    input_.erase(0, input_pos_);
    input_pos_ = 0;
  }
  processing_ = false;
  if (state_ != State::kOpen || current_ != nullptr) return;
  if (pending_write_bytes_ < kPipelineHighWaterBytes) StartReading();
  else StopReading();  // answers pile up unread: read again once they drain (HandleWriteDone)
}

ResponseInfo Connection::MakeInfo(bool head, bool keep_alive) const {
  ResponseInfo info;
  info.head = head;
  info.http11 = parser_.http11();
  info.keep_alive = keep_alive;
  info.durations = server_->durations();
  info.method_label = request_.method.empty() ? "other" : MethodLabel(request_.method);
  info.path_label = "other";
  info.start = parser_.request_start();
  const auto& origins = server_->options().cors_origins;
  if (!origins.empty()) {
    info.cors_vary = true;
    auto origin = request_.headers.find("origin");
    if (origin != request_.headers.end() && !origin->second.empty()) {
      for (const std::string& o : origins) {
        if (o == "*") {
          info.cors_allow = "*";
          break;
        }
        if (o == origin->second) {
          info.cors_allow = o;
          break;
        }
      }
    }
  }
  return info;
}

void Connection::Dispatch() {
  ResponseInfo info = MakeInfo(request_.method == "HEAD", parser_.keep_alive());
  const bool allowed_origin = !info.cors_allow.empty();
  const HttpHandler* route = server_->FindRoute(request_.path, &info.path_label);
  HttpHandler handler = route != nullptr ? *route : HttpHandler();  // a copy: a handler may re-register
  auto resp = std::make_shared<ResponseImpl>(this, std::move(info));
  current_ = resp;
  if (pending_write_bytes_ == 0) uv_timer_stop(&timer_);
  if (request_.method == "OPTIONS" && request_.headers.count("access-control-request-method") > 0) {
    // A CORS preflight: allowed for a listed origin only (Options::cors_origins).
    if (!allowed_origin) {
      resp->Send(403, "403 Forbidden: CORS origin not allowed (-api.cors-origin)\n");
      return;
    }
    HttpResponse::Headers h = {{"Access-Control-Allow-Methods", "GET, POST, HEAD"},
                               {"Access-Control-Max-Age", "600"},
                               {"Content-Length", "0"}};
    auto req_headers = request_.headers.find("access-control-request-headers");
    if (req_headers != request_.headers.end()) h.emplace_back("Access-Control-Allow-Headers", req_headers->second);
    resp->Start(204, h);
    resp->Finish();
    return;
  }
  if (const auto& guard = server_->guard(); guard) {
    HttpServer::Guard g = guard;  // a copy: the guard may be replaced meanwhile
    bool answered = false;
    try {
      answered = g(request_, resp);
    } catch (const std::exception& e) {
      Logger("http")->error("msg=\"guard threw\" path=\"{}\" err=\"{}\"", request_.path, e.what());
      if (!resp->started()) resp->Send(500, "internal error\n");
      return;
    }
    if (answered) return;
  }
  if (!handler) {
    resp->Send(404, "404 page not found\n");
    return;
  }
  // /health and /metrics stay open (small answers, and what an operator reads to see why).
  const bool exempt = request_.path == "/health" || request_.path == "/metrics";
  if (MemoryBudget* b = server_->options().memory_budget;
      b != nullptr && !exempt && !b->Admit(MemoryBudget::Use::kHttp)) {
    // The budget logs (rate-limited) and counts the refusal.
    const std::string body = "503 Service Unavailable: the node's memory budget is used up; retry later\n";
    resp->Start(503, {{"Retry-After", "1"}, {"Content-Type", "text/plain; charset=utf-8"},
                      {"Content-Length", std::to_string(body.size())}});
    resp->Write(body);
    resp->Finish();
    return;
  }
  try {
    handler(request_, resp);
  } catch (const std::exception& e) {
    Logger("http")->error("msg=\"handler threw\" path=\"{}\" err=\"{}\"", request_.path, e.what());
    if (!resp->started()) {
      resp->Send(500, "internal error\n");
    } else {
      CloseNow();
    }
  }
}

void Connection::RespondError(int status, std::string_view detail) {
  server_->CountBadRequest();
  Logger("http")->debug("msg=\"bad request\" peer={} status={} detail=\"{}\"", peer_, status, detail);
  ResponseInfo info = MakeInfo(false, false);
  if (!request_.path.empty()) server_->FindRoute(request_.path, &info.path_label);
  auto resp = std::make_shared<ResponseImpl>(this, std::move(info));
  current_ = resp;
  std::string body = std::to_string(status) + " " + ReasonPhrase(status);
  if (!detail.empty()) body += ": " + std::string(detail);
  body += "\n";
  resp->Send(status, std::move(body));
}

// ---------------------------------------------------------------------------------------------
// ServerImpl

ServerImpl::ServerImpl(uv_loop_t* loop, Options options, Registry* metrics)
    : loop_(loop), options_(options), read_buffer_(new char[kReadBufferBytes]) {
  if (metrics != nullptr) {
    durations_ = metrics->NewHistogramFamily("oklog_api_request_duration_seconds",
                                             "API request duration by method, path prefix and status code.",
                                             {"method", "path", "status_code"}, DefaultLatencyBuckets());
    bad_requests_ = metrics->NewCounter("oklog_api_bad_requests_total",
                                        "API requests rejected as malformed or oversize.");
    capped_ = metrics->NewCounter("oklog_api_connections_refused_total",
                                  "API connections closed at once because max_connections were open.");
  }
}

ServerImpl::~ServerImpl() {
  Close();
  // Handles still closing free themselves in their close callbacks, without us.
  for (Connection* c : conns_) c->ForgetServer();
}

Status ServerImpl::Listen(const Address& addr) {
  OKLOG_ASSIGN_OR_RETURN(listener_, TcpListener::Create(loop_, addr, [this](TcpListener* l, int status) {
                           OnConnection(l, status);
                         }));
  bound_ = listener_->bound();
  port_ = listener_->port();
  listener_->SetCap(options_.max_connections, [this] { return conns_.size(); }, [this] {
    if (capped_) capped_->Inc();
  });
  return Status::Ok();
}

void ServerImpl::OnConnection(TcpListener* listener, int status) {
  if (status < 0) {
    Logger("http")->warn("msg=\"listen error\" err=\"{}\"", uv_strerror(status));
    return;
  }
  auto* c = new Connection(this);  // deletes itself in its close callback
  conns_.insert(c);
  c->Accept(listener);  // never after Close(): a closed TcpListener calls nobody
}

void ServerImpl::Close() {
  if (closing_) return;
  closing_ = true;
  if (listener_ != nullptr) listener_->Close();
  // Close callbacks, which erase from conns_, run later; on-close callbacks run now.
  std::vector<Connection*> all(conns_.begin(), conns_.end());
  for (Connection* c : all) c->CloseNow();
}

const HttpHandler* ServerImpl::FindRoute(const std::string& path, std::string* label) const {
  const HttpHandler* best = nullptr;
  size_t best_len = 0;
  for (const auto& [prefix, handler] : routes_) {
    if (path.compare(0, prefix.size(), prefix) == 0 && (best == nullptr || prefix.size() > best_len)) {
      best = &handler;
      best_len = prefix.size();
      *label = prefix;
    }
  }
  return best;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string HttpRequest::Param(const std::string& key, const std::string& def) const {
  auto it = params.lower_bound(key);  // the first of equal keys, unlike find()
  return it != params.end() && it->first == key ? it->second : def;
}

void HttpResponse::Send(int status, std::string body, const std::string& content_type) {
  Start(status, {{"Content-Type", content_type}, {"Content-Length", std::to_string(body.size())}});
  Write(std::move(body));
  Finish();
}

Result<std::unique_ptr<HttpServer>> HttpServer::Create(uv_loop_t* loop, const Address& addr, Options options,
                                                       Registry* metrics) {
  // libuv writes with write(2): a peer that has gone would otherwise kill the process.
  signal(SIGPIPE, SIG_IGN);
  auto server = std::make_unique<ServerImpl>(loop, options, metrics);
  OKLOG_RETURN_IF_ERROR(server->Listen(addr));
  return std::unique_ptr<HttpServer>(std::move(server));
}

std::string UrlDecode(std::string_view s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else if (c == '+' && plus_as_space) {
      out += ' ';
    } else {
      out += c;  // includes invalid escapes, kept as they came
    }
  }
  return out;
}

std::string UrlEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::multimap<std::string, std::string> ParseQuery(std::string_view q) {
  std::multimap<std::string, std::string> out;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key = UrlDecode(pair.substr(0, eq), true);
    std::string value = eq == std::string_view::npos ? std::string() : UrlDecode(pair.substr(eq + 1), true);
    out.emplace(std::move(key), std::move(value));  // equal keys keep insertion order
  }
  return out;
}

}  // namespace oklog
