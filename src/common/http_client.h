// A small blocking HTTP/1.1 client for the command-line tools (`oklog query`, `oklog stream`)
// and tests: one request per connection ("Connection: close"), plain sockets with poll
// timeouts, TLS for https:// (crypto/tls_session.h over the same socket), response parsing by http-parser, no libuv. It keeps no shared state, so any thread
// may call it; the call blocks that thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/crypto/tls_context.h"
#include "common/status.h"

namespace oklog {

struct HttpClientResponse;

struct HttpClientOptions {
  // Bounds resolving and connecting, sending the request and waiting for the response head.
  std::chrono::milliseconds timeout{10000};
  // Bounds each wait for more body bytes; zero waits for ever (live streams are quiet at times).
  std::chrono::milliseconds body_idle_timeout{0};
  // Extra request headers. Host, User-Agent and Content-Length are set by the client unless
  // given here; "Connection: close" always is.
  std::vector<std::pair<std::string, std::string>> headers;
  // The request body, sent with a Content-Length (also when empty, for POST and PUT).
  std::string body;
  // When set, polled every 100 ms or so while waiting: storing true from another thread ends
  // the call with Cancelled.
  const std::atomic<bool>* cancel = nullptr;
  // When set, called once with the final response's status and headers (body still empty),
  // before the first body byte: a caller can route the body by status.
  std::function<void(const HttpClientResponse& head)> on_head;
  // For https:// URLs: a client context (the CA to trust, a client certificate to present).
  // Null: the system's trust store and no client certificate. The server's certificate must
  // name the URL's host (or IP). Ignored for http://.
  std::shared_ptr<const crypto::TlsContext> tls;
};

struct HttpClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased; repeated ones joined by ", "
  std::string body;                            // filled by HttpFetchAll only
  // The header's value (name in any case), or def.
  std::string Header(const std::string& name, const std::string& def = "") const;
};

// Receives the body piece by piece, already de-chunked. Return false to stop reading early;
// HttpFetch then returns the response as it stands (status OK) and closes the connection.
using HttpBodyCallback = std::function<bool(std::string_view chunk)>;

// url: "http://host:port/path?query", "https://host:port/path?query", "host:port/path?query"
// or "host:port" (path "/"); the port defaults to 80 (443 for https); IPv6 literals in brackets. The path and query are sent as given, so
// callers encode them (UrlEncode in common/http_server.h). Any HTTP status is a success here.
// Errors: InvalidArgument (bad URL or unsupported scheme), NotFound (the host does not
// resolve), Unavailable (no address accepted the connection), TimedOut, Cancelled, IOError
// (reset, a malformed response, a body cut short by the server closing, or a failed TLS
// handshake: an untrusted or misnamed server certificate, a refused client certificate).
Result<HttpClientResponse> HttpFetch(std::string_view method, std::string_view url, const HttpClientOptions& options,
                                     const HttpBodyCallback& on_body);

// As HttpFetch, collecting the whole body into response.body.
Result<HttpClientResponse> HttpFetchAll(std::string_view method, std::string_view url,
                                        const HttpClientOptions& options = {});

}  // namespace oklog
