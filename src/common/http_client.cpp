#include "common/http_client.h"

#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/address.h"
#include "common/crypto/tls_session.h"
#include "common/unique_fd.h"

namespace oklog {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kNoDeadline = Clock::time_point::max();
constexpr int kPollSliceMs = 100;  // how often a cancel flag is looked at

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

struct Target {
  bool https = false;
  Address addr;
  std::string host_header;    // as given: "host:port"
  std::string path_and_query;  // "/..." as given
};

Result<Target> ParseUrl(std::string_view url) {
  std::string_view rest = url;
  Target t;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
    t.https = true;
  } else if (rest.find("://") != std::string_view::npos) {
    return Status::InvalidArgument("unsupported URL scheme in \"" + std::string(url) + "\"");
  }
  size_t slash = rest.find_first_of("/?");
  std::string_view host_port = rest.substr(0, slash);
  t.path_and_query = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (t.path_and_query.front() == '?') t.path_and_query.insert(0, "/");
  if (host_port.empty()) return Status::InvalidArgument("no host in URL \"" + std::string(url) + "\"");
  auto addr = ParseAddress(host_port, t.https ? 443 : 80);
  if (!addr.ok()) return addr.status();
  t.addr = std::move(addr).value();
  t.host_header = std::string(host_port);
  return t;
}

// Waits until fd is ready for `events` (errors and hang-ups count as ready: the next call
// reports them), the deadline passes, or the cancel flag is set.
Status Wait(int fd, short events, Clock::time_point deadline, const std::atomic<bool>* cancel, const char* what) {
  for (;;) {
    if (cancel != nullptr && cancel->load()) return Status::Cancelled(std::string(what) + ": cancelled");
    int slice = cancel != nullptr ? kPollSliceMs : -1;
    if (deadline != kNoDeadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return Status::TimedOut(std::string(what) + ": timed out");
      slice = slice < 0 ? static_cast<int>(std::min<int64_t>(left, 60000)) : std::min<int>(slice, static_cast<int>(left));
    }
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, slice);
    if (r > 0) return Status::Ok();
    if (r < 0 && errno != EINTR) return Status::FromErrno("poll", what, errno);
  }
}

Result<UniqueFd> Connect(const Target& t, Clock::time_point deadline, const std::atomic<bool>* cancel) {
  auto addrs = Resolve(t.addr);
  if (!addrs.ok()) return addrs.status();
  Status last = Status::Unavailable("connecting to " + t.host_header + ": no address");
  for (const auto& ss : *addrs) {
    UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      last = Status::FromErrno("socket", t.host_header, errno);
      continue;
    }
    socklen_t len = ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
      if (errno != EINPROGRESS) {
        last = Status::Unavailable("connecting to " + t.host_header + ": " + std::strerror(errno));
        continue;
      }
      OKLOG_RETURN_IF_ERROR(Wait(fd.get(), POLLOUT, deadline, cancel, "connecting"));
      int err = 0;
      socklen_t elen = sizeof(err);
      getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
      if (err != 0) {
        last = Status::Unavailable("connecting to " + t.host_header + ": " + std::strerror(err));
        continue;
      }
    }
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }
  return last;
}

Status SendAll(int fd, std::string_view data, Clock::time_point deadline, const std::atomic<bool>* cancel) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      OKLOG_RETURN_IF_ERROR(Wait(fd, POLLOUT, deadline, cancel, "sending request"));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return Status::FromErrno("send", "request", errno);
  }
  return Status::Ok();
}

// Response parsing state; http-parser callbacks reach it through parser.data.
struct Reader {
  HttpClientResponse* resp;
  const HttpBodyCallback* on_body;
  bool head;
  const std::function<void(const HttpClientResponse&)>* on_head = nullptr;
  std::string field, value;
  bool in_value = false;
  bool headers_done = false;
  bool complete = false;
  bool stopped = false;

  void Commit() {
    if (field.empty()) return;
    auto [it, inserted] = resp->headers.emplace(Lower(field), value);
    if (!inserted) it->second += ", " + value;
    field.clear();
    value.clear();
  }

  static Reader* Of(http_parser* p) { return static_cast<Reader*>(p->data); }
  static const http_parser_settings& Settings() {
    static const http_parser_settings s = [] {
      http_parser_settings v;
      http_parser_settings_init(&v);
      v.on_header_field = [](http_parser* p, const char* at, size_t len) {
        Reader* r = Of(p);
        if (r->in_value) r->Commit();
        r->in_value = false;
        r->field.append(at, len);
        return 0;
      };
      v.on_header_value = [](http_parser* p, const char* at, size_t len) {
        Reader* r = Of(p);
        r->in_value = true;
        r->value.append(at, len);
        return 0;
      };
      v.on_headers_complete = [](http_parser* p) {
        Reader* r = Of(p);
        r->Commit();
        r->in_value = false;
        r->resp->status = p->status_code;
        if (p->status_code / 100 == 1) return 0;  // interim (100 Continue): another head follows
        r->headers_done = true;
        if (r->on_head && *r->on_head) (*r->on_head)(*r->resp);
        return r->head ? 1 : 0;  // 1: a response to HEAD has no body whatever its headers say
      };
      v.on_body = [](http_parser* p, const char* at, size_t len) {
        Reader* r = Of(p);
        if (!r->stopped && !(*r->on_body)(std::string_view(at, len))) {
          r->stopped = true;
          http_parser_pause(p, 1);
        }
        return 0;
      };
      v.on_message_complete = [](http_parser* p) {
        Reader* r = Of(p);
        if (p->status_code / 100 == 1) {
          r->resp->headers.clear();
          return 0;
        }
        r->complete = true;
        http_parser_pause(p, 1);
        return 0;
      };
      return v;
    }();
    return s;
  }
};

// One connection's bytes, plain or through a TLS session (whose records this sends and reads).
struct Wire {
  int fd;
  crypto::TlsSession* tls;  // null: plain
  const std::atomic<bool>* cancel;

  Status Flush(Clock::time_point deadline) {
    if (tls == nullptr || !tls->has_ciphertext()) return Status::Ok();
    return SendAll(fd, tls->TakeCiphertext(), deadline, cancel);
  }
  Status Send(std::string_view data, Clock::time_point deadline) {
    if (tls == nullptr) return SendAll(fd, data, deadline, cancel);
    OKLOG_RETURN_IF_ERROR(tls->Write(data));
    return Flush(deadline);
  }
};

Status ReadResponse(Wire* wire, Reader* reader, const HttpClientOptions& options, Clock::time_point head_deadline) {
  const int fd = wire->fd;
  http_parser parser;
  http_parser_init(&parser, HTTP_RESPONSE);
  parser.data = reader;
  char buf[64 * 1024];
  while (!reader->complete && !reader->stopped) {
    Clock::time_point deadline = head_deadline;
    if (reader->headers_done) {
      deadline = options.body_idle_timeout.count() > 0 ? Clock::now() + options.body_idle_timeout : kNoDeadline;
    }
    OKLOG_RETURN_IF_ERROR(Wait(fd, POLLIN, deadline, options.cancel,
                               reader->headers_done ? "reading response body" : "reading response head"));
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return Status::FromErrno("recv", "response", errno);
    }
    const char* data = buf;
    size_t len = static_cast<size_t>(n);
    std::string plain;
    if (wire->tls != nullptr && n > 0) {
      Status fed = wire->tls->Feed(std::string_view(buf, len), &plain);
      Status flushed = wire->Flush(head_deadline);  // records the session answers with (or its alert)
      if (!fed.ok()) return fed;
      if (!flushed.ok()) return flushed;
      if (plain.empty() && !wire->tls->peer_closed()) continue;  // handshake records
      data = plain.data();
      len = plain.size();
      if (wire->tls->peer_closed() && len == 0) n = 0;  // close_notify: the end, as EOF
    }
    size_t used = http_parser_execute(&parser, &Reader::Settings(), data, n == 0 ? 0 : len);
    auto err = static_cast<http_errno>(parser.http_errno);
    if (err != HPE_OK && err != HPE_PAUSED) {
      return Status::IOError(std::string("malformed HTTP response: ") + http_errno_description(err));
    }
    if (n == 0) {  // the server closed: ends a close-delimited body, cuts short anything else
      if (!reader->complete) {
        return Status::IOError(reader->headers_done ? "connection closed in the middle of the response body"
                                                    : "connection closed before a response");
      }
      break;
    }
    (void)used;
  }
  return Status::Ok();
}

}  // namespace

std::string HttpClientResponse::Header(const std::string& name, const std::string& def) const {
  auto it = headers.find(Lower(name));
  return it != headers.end() ? it->second : def;
}

Result<HttpClientResponse> HttpFetch(std::string_view method, std::string_view url, const HttpClientOptions& options,
                                     const HttpBodyCallback& on_body) {
  OKLOG_ASSIGN_OR_RETURN(Target target, ParseUrl(url));
  Clock::time_point deadline = Clock::now() + options.timeout;
  OKLOG_ASSIGN_OR_RETURN(UniqueFd fd, Connect(target, deadline, options.cancel));
  std::unique_ptr<crypto::TlsSession> tls;
  if (target.https) {
    std::shared_ptr<const crypto::TlsContext> ctx = options.tls;
    if (ctx == nullptr) {  // https:// without options: the system's trust store, no client certificate
      OKLOG_ASSIGN_OR_RETURN(ctx, crypto::TlsContext::Create(crypto::TlsRole::kClient, {}, nullptr));
    }
    OKLOG_ASSIGN_OR_RETURN(tls, crypto::TlsSession::Create(ctx, target.host_header, target.addr.host));
  }
  Wire wire{fd.get(), tls.get(), options.cancel};
  OKLOG_RETURN_IF_ERROR(wire.Flush(deadline));  // the ClientHello

  auto given = [&](std::string_view name) {
    return std::any_of(options.headers.begin(), options.headers.end(),
                       [&](const auto& h) { return Lower(h.first) == Lower(name); });
  };
  std::string req = std::string(method) + " " + target.path_and_query + " HTTP/1.1\r\n";
  if (!given("host")) req += "Host: " + target.host_header + "\r\n";
  if (!given("user-agent")) req += "User-Agent: oklog\r\n";
  bool with_body = !options.body.empty() || method == "POST" || method == "PUT";
  if (with_body && !given("content-length")) req += "Content-Length: " + std::to_string(options.body.size()) + "\r\n";
  for (const auto& [name, value] : options.headers) {
    if (Lower(name) == "connection") continue;
    req += name + ": " + value + "\r\n";
  }
  req += "Connection: close\r\n\r\n";

  HttpClientResponse resp;
  Reader reader{&resp, &on_body, method == "HEAD", &options.on_head};
  Status sent = wire.Send(req, deadline);
  if (sent.ok() && !options.body.empty()) sent = wire.Send(options.body, deadline);
  if (!sent.ok() && sent.code() != Code::kIOError) return sent;
  // Even when sending failed (the server may have refused the body and closed), its answer
  // may be waiting to be read.
  Status read = ReadResponse(&wire, &reader, options, deadline);
  if (!sent.ok() && !reader.headers_done) return sent;
  if (!read.ok()) return read;
  return resp;
}

Result<HttpClientResponse> HttpFetchAll(std::string_view method, std::string_view url,
                                        const HttpClientOptions& options) {
  std::string body;
  auto r = HttpFetch(method, url, options, [&body](std::string_view chunk) {
    body.append(chunk);
    return true;
  });
  if (r.ok()) r->body = std::move(body);
  return r;
}

}  // namespace oklog
