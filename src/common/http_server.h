// A small HTTP/1.1 server on a libuv loop (request parsing by Node's http-parser), made for
// OK Log's API: many small requests plus long streamed responses (queries, live tails) with
// backpressure. Loop thread only: every method, callback and handler runs on the loop thread.
//
// Lifetime: the server owns its connections. A handler receives a shared_ptr<HttpResponse>;
// whoever holds it may keep writing until Finish(), or until the client goes away, after which
// writes are dropped and closed() is true. The on-close callback fires once either way.
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
#include "common/status.h"

namespace oklog {

class Registry;

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
  // chunked transfer encoding (HTTP/1.1) or delimited by closing (HTTP/1.0).
  virtual void Start(int status, const Headers& headers) = 0;
  // Queues body bytes. Dropped (returning false) once the client has gone.
  virtual bool Write(std::string data) = 0;
  // Ends the response. The connection is kept alive for the next request when it can be.
  virtual void Finish() = 0;
  // Bytes queued in the socket write path and not yet written: producers pause above a
  // high-water mark and resume in the drain callback.
  virtual size_t buffered_bytes() const = 0;
  // Called (once per drop) when buffered bytes fall below the low-water mark (256 KiB).
  virtual void OnDrain(std::function<void()> cb) = 0;
  // Called once when the client disconnects or the response is finished.
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
  };
  // Binds and listens. Requests whose path starts with a registered prefix go to that handler
  // (longest prefix wins); others get 404. Malformed requests get 400 and the connection closes;
  // an oversize header or body gets 431/413. Counted in oklog_api_bad_requests_total.
  static Result<std::unique_ptr<HttpServer>> Create(uv_loop_t* loop, const Address& addr, Options options,
                                                    Registry* metrics);
  virtual ~HttpServer() = default;
  virtual void Handle(const std::string& path_prefix, HttpHandler handler) = 0;
  // The bound address (useful with port 0).
  virtual std::string BoundAddress() const = 0;
  virtual uint16_t port() const = 0;
  // Stops accepting and closes every connection; in-flight responses see closed(). The loop
  // must run afterwards for the close callbacks; the object may be destroyed once done() is true.
  virtual void Close() = 0;
  virtual bool done() const = 0;
};

// Percent-decoding of URL components ('+' as space in query strings).
std::string UrlDecode(std::string_view s, bool plus_as_space);
std::string UrlEncode(std::string_view s);

}  // namespace oklog
