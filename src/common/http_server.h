// A small HTTP/1.1 server on a libuv loop (request parsing by Node's http-parser), made for
// OK Log's API: many small requests plus long streamed responses (queries, live tails) with
// backpressure. Loop thread only: every method, callback and handler runs on the loop thread.
//
// Lifetime: the server owns its connections. A handler receives a shared_ptr<HttpResponse>;
// whoever holds it may keep writing until Finish(), or until the client goes away, after which
// writes are dropped and closed() is true. The on-close callback fires once either way.
// A client that hangs up (EOF or reset) while its response is in progress counts as gone, as
// Go's CloseNotifier did for OK Log's streams; the next pipelined request is not parsed until
// the current response finishes. Callbacks stored on a response (drain, close) are dropped when
// it closes, so they may hold the response's shared_ptr without leaking it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "common/crypto/tls_context.h"
#include "common/status.h"

namespace oklog {

class MemoryBudget;
class Registry;

// Valid only during the handler call: copy what an asynchronous response needs.
struct HttpRequest {
  std::string method;  // "GET", "HEAD", "POST", ...
  std::string path;    // decoded path, without the query string
  std::string raw_query;
  std::multimap<std::string, std::string> params;  // decoded query parameters
  std::map<std::string, std::string> headers;      // names lower-cased
  std::string body;
  std::string peer;  // "ip:port" of the client

  bool Has(const std::string& key) const { return params.count(key) > 0; }
  // The first value of the parameter, or def.
  std::string Param(const std::string& key, const std::string& def = "") const;
};

class HttpResponse {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;
  virtual ~HttpResponse() = default;
  // Sends the status line and headers. Without a Content-Length header the body is sent with
  // chunked transfer encoding (HTTP/1.1) or delimited by closing (HTTP/1.0). The server adds
  // the CORS headers (Options::cors_origins) and its own framing headers (Transfer-Encoding and
  // Connection given here are ignored, except "Connection: close"). With a nonzero
  // Content-Length the head is held back and goes out with the first body bytes; otherwise at
  // once. A body shorter than its Content-Length closes the connection after the response;
  // extra bytes are cut off. Write() before Start() starts a 200 with no extra headers.
  virtual void Start(int status, const Headers& headers) = 0;
  // Queues body bytes. Dropped (returning false) once the client has gone or after Finish().
  // For HEAD and 204/304 the bytes are discarded and true is returned.
  virtual bool Write(std::string data) = 0;
  // Ends the response (no-op once closed). Fires the on-close callback. The connection is kept
  // alive for the next request when it can be. Finish() before Start() sends an empty 200.
  virtual void Finish() = 0;
  // Ends the response as broken, for an answer that cannot be completed after its status went
  // out: what was written is sent, then the connection closes without the body's end (no last
  // chunk; a Content-Length body stays short), so a client sees a cut-off transfer, never a
  // complete answer. (An HTTP/1.0 body delimited by closing cannot show this.) Fires the
  // on-close callback. Before Start() it answers 500 with `reason`.
  virtual void Abort(const std::string& reason) = 0;
  // Bytes queued in the socket write path and not yet written: producers pause above a
  // high-water mark and resume in the drain callback.
  virtual size_t buffered_bytes() const = 0;
  // Called (once per drop) when a write completes leaving buffered bytes below the low-water
  // mark (256 KiB), provided Write() was called since the last call. The pattern: write while
  // buffered_bytes() is below your high-water mark, then return and continue in this callback.
  virtual void OnDrain(std::function<void()> cb) = 0;
  // Called once when the client disconnects or the response is finished; at once if already
  // closed.
  virtual void OnClose(std::function<void()> cb) = 0;
  virtual bool closed() const = 0;
  // Whether the request was HEAD (the body is discarded by the server in that case).
  virtual bool is_head() const = 0;

  // Convenience: a whole response with a plain-text body.
  void Send(int status, std::string body, const std::string& content_type = "text/plain; charset=utf-8");
};

using HttpHandler = std::function<void(const HttpRequest&, std::shared_ptr<HttpResponse>)>;

class HttpServer {
 public:
  struct Options {
    size_t max_header_bytes = 64 * 1024;
    size_t max_body_bytes = 64 * 1024 * 1024;
    uint64_t idle_timeout_ms = 120000;  // closes keep-alive connections idle this long
    // At this many open connections a new one is closed at once (TcpListener::SetCap), counted
    // in oklog_api_connections_refused_total; 0: no cap.
    size_t max_connections = 0;
    // Set: every connection speaks TLS (crypto/tls_context.h: a server context, which may
    // require client certificates); a handshake must complete within its handshake_timeout.
    // Null: plain HTTP.
    std::shared_ptr<const crypto::TlsContext> tls;
    // CORS. Empty: no CORS header on any response and every preflight is refused (403), so a
    // browser page of another origin cannot read the API. Otherwise the origins allowed
    // ("https://ui.example.com", exact match; "*" for any): a request whose Origin is listed
    // gets Access-Control-Allow-Origin with that origin (and Access-Control-Expose-Headers for
    // the X-Oklog-* headers), every response gets Vary: Origin, and a preflight (OPTIONS with
    // Access-Control-Request-Method) from a listed origin gets a 204 allowing GET, HEAD and
    // POST and the headers it asked for; from an unlisted one, a 403.
    std::vector<std::string> cors_origins;
    // Request bodies and answer bytes waiting in the socket write path are charged to it
    // (common/memory_budget.h); while it is used up a new request gets 503 (with Retry-After;
    // /health and /metrics excepted) and a body that would take it over gets 503 too. Null: no
    // bound. Must outlive the server.
    MemoryBudget* memory_budget = nullptr;
  };
  // Runs before every request's route (not before CORS preflights, which carry no
  // credentials): returns true when it answered the request itself (a 401), false to let the
  // route have it. Unknown paths go through it too, so a refused client learns nothing of them.
  using Guard = std::function<bool(const HttpRequest&, const std::shared_ptr<HttpResponse>&)>;
  // Binds and listens. Requests whose path starts with a registered prefix go to that handler
  // (longest prefix wins); others get 404. Malformed requests get 400 and the connection closes;
  // an oversize header or body gets 431/413. Counted in oklog_api_bad_requests_total; every
  // response in oklog_api_request_duration_seconds{method,path,status_code}, path being the
  // matched prefix or "other". metrics may be null; otherwise it must outlive the server.
  // A decoded path containing NUL is a 400. CORS preflights: see Options::cors_origins.
  // Idle timeout: a connection must deliver a complete request head within idle_timeout_ms of
  // waiting (bytes of a partial head do not extend it); body bytes and write progress do; a
  // response in progress with nothing queued (a quiet live tail) never times out.
  // Ignores SIGPIPE for the process (libuv writes with write(2)). On failure the loop must
  // still run once to free the listener handle, before uv_loop_close().
  static Result<std::unique_ptr<HttpServer>> Create(uv_loop_t* loop, const Address& addr, Options options,
                                                    Registry* metrics);
  virtual ~HttpServer() = default;
  // Handlers are called on the loop thread with the request (valid during the call only) and
  // a response that may be finished later. A handler that throws gets a 500 (or a closed
  // connection if it had started). May be called from a handler.
  virtual void Handle(const std::string& path_prefix, HttpHandler handler) = 0;
  // Replaces the guard (null: none, the default).
  virtual void SetGuard(Guard guard) = 0;
  // The bound address (useful with port 0).
  virtual std::string BoundAddress() const = 0;
  virtual uint16_t port() const = 0;
  // Stops accepting and closes every connection; in-flight responses see closed(). The loop
  // must run afterwards for the close callbacks. Destroying the server earlier is safe too
  // (handles still closing free themselves), but the loop must still run before uv_loop_close.
  virtual void Close() = 0;
  virtual bool done() const = 0;
};

// Percent-decoding of URL components ('+' as space in query strings). Invalid escapes ("%zz",
// a trailing "%") are kept as they came; "%00" yields a NUL byte.
std::string UrlDecode(std::string_view s, bool plus_as_space);
// Percent-encodes everything but RFC 3986 unreserved characters (so ' ' becomes %20): safe in a
// path segment and in a query key or value.
std::string UrlEncode(std::string_view s);
// A URL query string ("a=1&b=x%20y&flag") as decoded key/value pairs ('+' as space); equal keys
// keep their order, a key without '=' has the value "".
std::multimap<std::string, std::string> ParseQuery(std::string_view q);

}  // namespace oklog
