// Helpers for the query tests: real store segments written with SegmentWriter into a temp
// directory, a brute-force reference query, and a collecting sink.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "query/matcher.h"
#include "query/record_sink.h"
#include "segments/store_log.h"

namespace oklog::testing {

// A temporary directory removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = std::filesystem::temp_directory_path().string() + "/oklog_query_test_XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct TestRecord {
  Ulid ulid;
  std::string text;  // "ULID SP topic SP line LF"
};

inline TestRecord MakeRecord(uint64_t ms, uint64_t seq, const std::string& topic, const std::string& line) {
  Ulid u = Ulid::FromParts(ms, 0, seq);
  return {u, u.ToString() + " " + topic + " " + line + "\n"};
}

// Writes one segment holding `records` (sorted by the caller) and adds it to the store.
inline void WriteSegment(StoreLog* store, const std::vector<TestRecord>& records) {
  auto w = store->NewWriter();
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (const TestRecord& r : records) ASSERT_TRUE(w.value()->Append(r.text).ok());
  auto path = w.value()->Finish();
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  ASSERT_TRUE(store->Add(path.value()).ok());
}

// Every record the query should return, in ULID order, each once.
inline std::vector<std::string> Reference(const std::vector<TestRecord>& all, const Matcher& m, const Ulid& from,
                                          const Ulid& to) {
  std::map<Ulid, std::string> hits;
  for (const TestRecord& r : all) {
    if (r.ulid < from || r.ulid > to) continue;
    std::string_view payload(r.text);
    payload.remove_prefix(Ulid::kTextSize + 1);
    payload.remove_suffix(1);
    if (m.MatchPayload(payload)) hits.emplace(r.ulid, r.text);
  }
  std::vector<std::string> out;
  for (auto& [u, t] : hits) out.push_back(t);
  return out;
}

class CollectSink : public RecordSink {
 public:
  bool Add(std::string_view record) override {
    records.emplace_back(record);
    return stop_after == 0 || records.size() < stop_after;
  }
  std::vector<std::string> records;
  size_t stop_after = 0;  // refuse after this many (0: never)
};

}  // namespace oklog::testing
