// ApiTokens: bearer tokens for the HTTP API, read from `-api.tokens-file`, and the guard that
// checks them on every request (HttpServer::SetGuard).
//
// File format, one token a line:
//   file    = *(line LF)
//   line    = *SP [ comment | entry ]
//   comment = "#" *any                        ; and blank lines: ignored
//   entry   = scopes 1*SP token *SP [ comment ]
//   scopes  = scope *( "," scope )            ; "read", "write", or "read,write"
//   token   = 16..4096 characters of 0x21-0x7e except "#" and ","
// e.g.
//   # dashboards and `oklog query`
//   read  3e1c0f2b9a7d4c58a1f0e6b2d9c4a7e1
//   read,write 9b7d2f... (an operator)
// A token is an opaque secret: `oklog keygen` prints a suitable one. The scopes are separate:
// a write-only token cannot query; give both for both. The same token on two lines gets the
// union of their scopes.
//
// What needs which scope (ScopeFor): GET and HEAD (queries, live streams, /cluster, /metrics,
// the UI) need read; every other method needs write (no route changes state today, so a write
// token only matters for what comes; the rule covers it already). CORS preflights and the paths
// left open (/health, for load balancers and probes that carry no secret) need nothing.
//
// Tokens are kept as SHA-256 digests and compared with CRYPTO_memcmp against every entry (no
// early exit), so neither the comparison's time nor the digests' order tells a guess how close
// it came.
//
// Thread: immutable once made; share as shared_ptr<const ApiTokens>. SIGHUP swaps in a new one.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/http_server.h"
#include "common/status.h"

namespace oklog {

enum class ApiScope : uint8_t { kRead = 1, kWrite = 2 };

class ApiTokens {
 public:
  static constexpr size_t kMinTokenChars = 16;
  static constexpr size_t kMaxTokenChars = 4096;
  enum class Verdict { kAllowed, kMissing, kInvalid, kForbidden };

  // InvalidArgument naming the line for an unknown scope, a short, long or malformed token, or
  // a line without one; a text with no token at all is InvalidArgument too.
  static Result<std::shared_ptr<const ApiTokens>> Parse(std::string_view text);
  // NotFound / IOError when the file cannot be read; then as Parse, with the path named.
  static Result<std::shared_ptr<const ApiTokens>> LoadFile(const std::string& path);

  // authorization: the request's Authorization header ("" when absent). kMissing without a
  // bearer token; kInvalid for a token not in the file; kForbidden for a token without `needed`.
  Verdict Check(std::string_view authorization, ApiScope needed) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::array<uint8_t, 32> digest;
    uint8_t scopes;
  };
  std::vector<Entry> entries_;
};

// read for GET and HEAD, write for any other method.
ApiScope ScopeFor(std::string_view method);

// The guard for HttpServer::SetGuard: with no tokens (current() null) it lets everything
// through; otherwise a request to a path outside open_paths needs a token of its scope: 401 with
// `WWW-Authenticate: Bearer realm="oklog"` (and error="invalid_token" for an unknown one) when
// it has none or a wrong one, 403 (error="insufficient_scope") when its token lacks the scope.
// current is called on the loop thread for every request.
HttpServer::Guard TokenGuard(std::function<std::shared_ptr<const ApiTokens>()> current,
                             std::set<std::string> open_paths);

}  // namespace oklog
