// The bodies of the data-plane RPC methods: segment.* (segments/segment_messages.h),
// holdings.pull and segment.copy (segments/holdings.h), query.run and stream.open
// (query/query_messages.h). The first byte picks the decoder; the rest is the body.
//   Decode ok  =>  Encode(decoded) decodes to equal fields, and encoding that again gives the
//                  same bytes (one canonical encoding per value)
#include <functional>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "query/query_messages.h"
#include "segments/holdings.h"
#include "segments/segment_messages.h"

namespace {

using namespace oklog;

// Decode, encode, decode again: equal values (eq) and a stable encoding.
template <typename T, typename Dec, typename Enc, typename Eq>
void RoundTrip(std::string_view body, Dec decode, Enc encode, Eq eq) {
  Result<T> v = decode(body);
  if (!v.ok()) return;
  const std::string once = encode(*v);
  Result<T> again = decode(once);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(eq(*v, *again));
  FUZZ_CHECK(encode(*again) == once);
}

bool SameMissing(const std::vector<MissingBatch>& a, const std::vector<MissingBatch>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].batch != b[i].batch || a[i].records != b[i].records || a[i].holders != b[i].holders) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t which = in.Byte();
  const std::string_view body = in.Rest();
  switch (which % 11) {
    case 0:
      RoundTrip<uint64_t>(body, DecodeSegmentNext, EncodeSegmentNext, std::equal_to<>());
      break;
    case 1:
      RoundTrip<std::vector<ClaimedSegment>>(
          body, DecodeClaimedSegments, EncodeClaimedSegments,
          [](const std::vector<ClaimedSegment>& a, const std::vector<ClaimedSegment>& b) {
            if (a.size() != b.size()) return false;
            for (size_t i = 0; i < a.size(); ++i)
              if (a[i].id != b[i].id || a[i].bytes != b[i].bytes) return false;
            return true;
          });
      break;
    case 2:
      RoundTrip<std::string>(body, DecodeSegmentId, [](const std::string& id) { return EncodeSegmentId(id); },
                             std::equal_to<>());
      break;
    case 3:
      RoundTrip<std::vector<std::string>>(body, DecodeSegmentIds, EncodeSegmentIds, std::equal_to<>());
      break;
    case 4:
      RoundTrip<uint64_t>(body, DecodeStoredRecords, EncodeStoredRecords, std::equal_to<>());
      break;
    case 5:
      RoundTrip<QueryRunRequest>(body, DecodeQueryRunRequest, EncodeQueryRunRequest,
                                 [](const QueryRunRequest& a, const QueryRunRequest& b) {
                                   return a.kind == b.kind && a.from == b.from && a.to == b.to && a.q == b.q &&
                                          a.mode == b.mode && a.topics == b.topics && a.limit == b.limit &&
                                          a.asked == b.asked;
                                 });
      break;
    case 6:
      RoundTrip<QueryRunStats>(body, DecodeQueryRunStats, EncodeQueryRunStats,
                               [](const QueryRunStats& a, const QueryRunStats& b) {
                                 return a.nodes == b.nodes && a.segments == b.segments &&
                                        a.max_data_set_size == b.max_data_set_size && a.errors == b.errors &&
                                        a.missing_total == b.missing_total && SameMissing(a.missing, b.missing);
                               });
      break;
    case 7:
      RoundTrip<MatchSpec>(body, DecodeStreamOpen, EncodeStreamOpen, [](const MatchSpec& a, const MatchSpec& b) {
        return a.q == b.q && a.mode == b.mode && a.topics == b.topics;
      });
      break;
    case 8:
      RoundTrip<std::pair<uint64_t, uint64_t>>(
          body, DecodeHoldingsPull, [](const std::pair<uint64_t, uint64_t>& p) { return EncodeHoldingsPull(p.first, p.second); },
          std::equal_to<>());
      break;
    case 9:
      RoundTrip<HoldingsDelta>(body, DecodeHoldingsDelta, EncodeHoldingsDelta,
                               [](const HoldingsDelta& a, const HoldingsDelta& b) {
                                 return a.epoch == b.epoch && a.version == b.version && a.full == b.full &&
                                        a.add == b.add && a.drop == b.drop;
                               });
      break;
    case 10: {
      // The copy's file is a view into the body: compare within one decode's lifetime.
      Result<SegmentCopy> c = DecodeSegmentCopy(body);
      if (!c.ok()) break;
      FUZZ_CHECK(!c->file.empty());
      FUZZ_CHECK(c->file.data() + c->file.size() == body.data() + body.size());
      const std::string once = EncodeSegmentCopy(c->claims, c->file);
      Result<SegmentCopy> again = DecodeSegmentCopy(once);
      FUZZ_CHECK(again.ok());
      FUZZ_CHECK(again->claims == c->claims && again->file == c->file);
      FUZZ_CHECK(EncodeSegmentCopy(again->claims, again->file) == once);
      break;
    }
  }
  return 0;
}
