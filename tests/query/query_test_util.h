// Helpers for the query tests: real store segments written with SegmentWriter into a temp
// directory, a brute-force reference query, and a collecting sink.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include <algorithm>
#include <map>
#include <cstdlib>
#include <sstream>
#include <fstream>
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

struct HttpResult {
  int status = 0;
  std::multimap<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// Runs curl against the server and parses what it saved. The body goes to a file, headers to
// another, so binary bodies survive.
inline HttpResult Curl(const std::string& dir, const std::string& args) {
  static int n = 0;
  std::string hdr = dir + "/h" + std::to_string(++n), body = dir + "/b" + std::to_string(n);
  std::string cmd = "curl -sS -g --max-time 60 -D " + hdr + " -o " + body + " " + args;
  int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd;
  HttpResult r;
  std::ifstream h(hdr, std::ios::binary);
  std::string line;
  while (std::getline(h, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("HTTP/", 0) == 0) {
      r.status = std::stoi(line.substr(line.find(' ') + 1));
      r.headers.clear();
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    r.headers.emplace(name, value);
  }
  std::ifstream b(body, std::ios::binary);
  std::stringstream ss;
  ss << b.rdbuf();
  r.body = ss.str();
  return r;
}

inline std::string Header(const HttpResult& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "<missing>" : it->second;
}

}  // namespace oklog::testing
