// The API's request parser (common/http_request_parser.h), fed as a connection feeds it: the
// bytes arrive in pieces, each Execute parses what is buffered, a request is taken whole,
// then parsing resumes after it (pipelining); an error ends the connection.
// Input: header_limit:u8 piece:u8 bytes. Invariants:
//   * the same requests (method, path, query, headers, body), and an error or none, whether the
//     bytes come at once or in pieces
//   * every request has a path starting with '/' (or "*" for OPTIONS), with no NUL; params are
//     ParseQuery(raw_query); header names are lower case; the body is within the limit
#include <string>
#include <vector>

#include "common/http_request_parser.h"
#include "common/http_server.h"
#include "fuzz_check.h"

using namespace oklog;

namespace {

struct Outcome {
  std::vector<std::string> requests;  // each flattened
  int error = 0;
  bool operator==(const Outcome&) const = default;
};

std::string Flatten(const HttpRequest& r) {
  std::string s = r.method + "\n" + r.path + "\n" + r.raw_query + "\n";
  for (const auto& [k, v] : r.headers) s += k + ": " + v + "\n";
  return s + "\n" + r.body;
}

void CheckRequest(const HttpRequest& r, const HttpRequestParser::Limits& limits) {
  FUZZ_CHECK(!r.method.empty());
  FUZZ_CHECK(r.path == "*" ? r.method == "OPTIONS" : (!r.path.empty() && r.path.front() == '/'));
  FUZZ_CHECK(r.path.find('\0') == std::string::npos);
  FUZZ_CHECK(r.params == ParseQuery(r.raw_query));
  for (const auto& [k, v] : r.headers)
    for (char c : k) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
  FUZZ_CHECK(r.body.size() <= limits.max_body_bytes);
}

Outcome Run(std::string_view bytes, size_t piece, const HttpRequestParser::Limits& limits) {
  Outcome out;
  HttpRequestParser parser(limits);
  std::string input;  // received, not yet parsed (the connection's input_)
  size_t fed = 0;
  while (fed < bytes.size()) {
    const size_t n = std::min(piece, bytes.size() - fed);
    input.append(bytes.substr(fed, n));
    fed += n;
    size_t pos = 0;
    while (pos < input.size()) {
      const size_t len = input.size() - pos;
      HttpRequestParser::Step step = parser.Execute(input.data() + pos, len);
      FUZZ_CHECK(step.consumed <= len);
      pos += step.consumed;
      if (step.error_status != 0) {
        FUZZ_CHECK(step.error_status == 400 || step.error_status == 413 || step.error_status == 431);
        out.error = step.error_status;
        return out;
      }
      if (step.request) {
        CheckRequest(parser.request(), limits);
        out.requests.push_back(Flatten(parser.request()));
        if (out.requests.size() >= 16) return out;
        continue;
      }
      if (step.consumed == len) break;  // needs more bytes
    }
    input.erase(0, pos);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  HttpRequestParser::Limits limits;
  limits.max_header_bytes = 64 + 16 * size_t{data[0]};
  limits.max_body_bytes = 1024;
  const size_t piece = 1 + data[1] % 64;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);
  const Outcome whole = Run(bytes, bytes.size() + 1, limits);
  const Outcome pieces = Run(bytes, piece, limits);
  FUZZ_CHECK(whole.requests == pieces.requests);
  // Which error a bad request gets may depend on where the reads split it: http-parser reports
  // a token's bytes at each buffer end, so the header limit (431) can trip before a bad byte
  // later in the same token (400) is seen. Bad is bad either way: the connection closes.
  FUZZ_CHECK((whole.error != 0) == (pieces.error != 0));
  return 0;
}
