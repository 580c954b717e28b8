// The query string of /store/query and /store/stream: URL decoding (common/http_server.h
// UrlDecode, ParseQuery), the parameters (query/query_params.h, query/stream_api.h), time
// bounds and RFC3339. Input: selector:u8 now_ms:u64 text.
//   UrlDecode(UrlEncode(x)) == x, and ParseQuery finds an encoded pair as it was
//   ParseQueryParams ok  =>  from/to bounds hold at millisecond resolution, and the query.run
//                            request the fan-out would send for it decodes on the store side
//   ParseTimeBound ok    =>  the same text as a `to` bound is ok and not below the `from` one
//   ParseRfc3339Ms ok    =>  FormatRfc3339Millis parses back to the same millisecond
#include <map>
#include <string>

#include "common/http_server.h"
#include "fuzz_check.h"
#include "query/query_messages.h"
#include "query/query_params.h"
#include "query/stream_api.h"

using namespace oklog;

namespace {

void Params(std::string_view raw, uint64_t now_ms) {
  const std::multimap<std::string, std::string> params = ParseQuery(raw);
  (void)ParseStreamParams(params);
  Result<QueryParams> p = ParseQueryParams(params, now_ms);
  if (!p.ok()) {
    FUZZ_CHECK(p.status().code() == Code::kInvalidArgument);
    return;
  }
  QueryRunRequest r;
  r.from = p->from;
  r.to = p->to;
  r.q = p->q;
  r.mode = p->mode;
  r.topics = p->topics;
  r.limit = p->limit;
  Result<QueryRunRequest> sent = DecodeQueryRunRequest(EncodeQueryRunRequest(r));
  if (!sent.ok()) std::fprintf(stderr, "accepted parameters the stores refuse: %s\n", sent.status().ToString().c_str());
  FUZZ_CHECK(sent.ok());
  FUZZ_CHECK(sent->q == p->q && sent->topics == p->topics && sent->from == p->from && sent->to == p->to);
}

void Bound(std::string_view text, uint64_t now_ms) {
  Result<Ulid> from = ParseTimeBound(text, BoundSide::kFrom, now_ms);
  Result<Ulid> to = ParseTimeBound(text, BoundSide::kTo, now_ms);
  FUZZ_CHECK(from.ok() == to.ok());
  if (from.ok()) FUZZ_CHECK(*from <= *to);
}

void Rfc3339(std::string_view text) {
  std::optional<uint64_t> ms = ParseRfc3339Ms(text);
  if (!ms) return;
  const std::string millis = FormatRfc3339Millis(*ms);
  if (ParseRfc3339Ms(millis) != ms)
    std::fprintf(stderr, "%llu ms formatted as %s\n", static_cast<unsigned long long>(*ms), millis.c_str());
  FUZZ_CHECK(ParseRfc3339Ms(millis) == ms);
  FUZZ_CHECK(ParseRfc3339Ms(FormatRfc3339(*ms)) == *ms - *ms % 1000);
}

void Url(std::string_view text) {
  const std::string enc = UrlEncode(text);
  FUZZ_CHECK(UrlDecode(enc, true) == text && UrlDecode(enc, false) == text);
  const auto q = ParseQuery("k=" + enc + "&" + enc + "=v");
  const auto k = q.lower_bound("k");  // the first of equal keys
  FUZZ_CHECK(k != q.end() && k->second == text);
  if (!text.empty()) {
    const auto v = q.find(std::string(text));
    FUZZ_CHECK(v != q.end());
  }
  (void)UrlDecode(text, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t which = in.Byte();
  // Any clock from 1970 to the last ULID millisecond.
  const uint64_t now_ms = in.U64() % (Ulid::kMaxUnixMs + 1);
  const std::string_view text = in.Rest();
  switch (which % 4) {
    case 0: Params(text, now_ms); break;
    case 1: Bound(text, now_ms); break;
    case 2: Rfc3339(text); break;
    case 3: Url(text); break;
  }
  return 0;
}
