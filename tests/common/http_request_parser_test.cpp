// common/http_request_parser.h: the request side of the HTTP server, fed bytes without sockets.
#include "common/http_request_parser.h"

#include <gtest/gtest.h>

#include <string>

namespace oklog {
namespace {

// Feeds `bytes` `piece` at a time, as a connection's reads would; the first step that ends a
// request or fails.
HttpRequestParser::Step Feed(HttpRequestParser& p, const std::string& bytes, size_t piece) {
  HttpRequestParser::Step last;
  for (size_t off = 0; off < bytes.size(); off += piece) {
    last = p.Execute(bytes.data() + off, std::min(piece, bytes.size() - off));
    if (last.request || last.error_status != 0) return last;
  }
  return last;
}

// The header limit counts the head's bytes, not how the client's sends split it: a head just
// under the limit, fed a byte at a time, is a request (it was a 431 when each piece of a header
// name counted the separator again; found by fuzz_http_request).
TEST(HttpRequestParserTest, TheHeaderLimitDoesNotDependOnHowTheBytesWereSplit) {
  const std::string req = "GET /store/query HTTP/1.1\r\nHost: a\r\nX-Long-Header-Name: v\r\n\r\n";
  for (size_t piece : {req.size(), size_t{1}, size_t{3}, size_t{7}}) {
    HttpRequestParser p({/*max_header_bytes=*/64, /*max_body_bytes=*/1024});
    HttpRequestParser::Step s = Feed(p, req, piece);
    EXPECT_TRUE(s.request) << "piece " << piece << ": status " << s.error_status;
    EXPECT_EQ(p.request().headers["x-long-header-name"], "v");
  }
  HttpRequestParser small({/*max_header_bytes=*/30, /*max_body_bytes=*/1024});
  EXPECT_EQ(Feed(small, req, 1).error_status, 431) << "the limit still holds";
}

}  // namespace
}  // namespace oklog
