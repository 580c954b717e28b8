// Raw record runs (segments/record_merge.h): the body of segment.replicate, a pending ingest
// segment a store pulls, and every buffer the consumers, compaction and the query fan-out
// merge. The input is split at NUL bytes into up to 8 buffers.
//   ParseRecords  =>  every view is a whole record of its buffer ("ULID SP topic SP line LF",
//                     canonical ULID, non-empty topic), records + invalid = the buffer's lines
//   MergeBuffers  =>  strictly increasing ULIDs; every distinct ULID of the inputs exactly once;
//                     kept + duplicates = the records parsed
#include <set>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "segments/record_merge.h"

using namespace oklog;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  std::vector<std::string_view> buffers;
  while (!in.empty() && buffers.size() < 8) buffers.push_back(in.Until('\0'));

  uint64_t parsed = 0;
  std::set<std::string_view> ulids;
  for (std::string_view buf : buffers) {
    ParseStats stats;
    std::vector<std::string_view> recs = ParseRecords(buf, &stats);
    FUZZ_CHECK(stats.records == recs.size());
    uint64_t lines = 0;
    for (char c : buf) lines += c == '\n';
    if (!buf.empty() && buf.back() != '\n') ++lines;  // the torn tail
    FUZZ_CHECK(stats.records + stats.invalid == lines);
    for (std::string_view r : recs) {
      FUZZ_CHECK(r.data() >= buf.data() && r.data() + r.size() <= buf.data() + buf.size());
      FUZZ_CHECK(r.size() >= Ulid::kTextSize + 3 && r.back() == '\n');
      FUZZ_CHECK(r.find('\n') == r.size() - 1);
      FUZZ_CHECK(IsCanonicalUlid(r.data()) && r[Ulid::kTextSize] == ' ');
      FUZZ_CHECK(r[Ulid::kTextSize + 1] != ' ');  // a topic of at least one byte
      ulids.insert(r.substr(0, Ulid::kTextSize));
    }
    std::vector<std::string_view> sorted = recs;
    SortRecords(&sorted);
    for (size_t i = 1; i < sorted.size(); ++i)
      FUZZ_CHECK(sorted[i - 1].substr(0, Ulid::kTextSize) <= sorted[i].substr(0, Ulid::kTextSize));
    parsed += recs.size();
  }

  MergedRecords merged = MergeBuffers(buffers);
  FUZZ_CHECK(merged.records.size() == ulids.size());
  FUZZ_CHECK(merged.records.size() + merged.duplicates == parsed);
  uint64_t bytes = 0;
  for (size_t i = 0; i < merged.records.size(); ++i) {
    bytes += merged.records[i].size();
    if (i > 0)
      FUZZ_CHECK(merged.records[i - 1].substr(0, Ulid::kTextSize) < merged.records[i].substr(0, Ulid::kTextSize));
  }
  FUZZ_CHECK(bytes == merged.bytes);
  return 0;
}
