#include "query/query_executor.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>

#include "query/query_test_util.h"
#include "segments/compactor.h"

namespace oklog {
namespace {

using testing::CollectSink;
using testing::MakeRecord;
using testing::Reference;
using testing::TempDir;
using testing::TestRecord;
using testing::WriteSegment;

constexpr uint64_t kBaseMs = 1700000000000;

std::string RandomLine(std::mt19937& rng, uint64_t i) {
  static const char* kWords[] = {"GET",    "POST",   "/api/v1/users", "timeout", "Timeout", "ok",  "200",
                                 "500",    "upstream", "cache",       "miss",    "k8s",     "é",   "ſ",
                                 "status", "\"x\":1",  "db",          "slow",    "KEY",     "key", "."};
  std::string l = "req=" + std::to_string(i);
  size_t n = 2 + rng() % 8;
  for (size_t k = 0; k < n; ++k) l += std::string(" ") + kWords[rng() % std::size(kWords)];
  return l;
}

// A store of six segments: three overlapping each other (with shared records, i.e. replicas),
// two adjacent disjoint ones, and one overlapping the last. 4 KiB blocks, so many blocks.
class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreLogOptions o;
    o.writer.block_target_bytes = 4096;
    auto s = StoreLog::Open(dir_.path(), o, &metrics_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    std::mt19937 rng(42);
    const char* kTopics[] = {"api", "web", "db"};
    for (uint64_t i = 0; i < 4000; ++i) {
      // Several records per millisecond, so millisecond bounds cut inside runs.
      records_.push_back(MakeRecord(kBaseMs + i / 3, i, kTopics[rng() % 3], RandomLine(rng, i)));
    }
    auto range = [&](size_t lo, size_t hi, int keep_percent) {
      std::vector<TestRecord> out;
      for (size_t i = lo; i < hi; ++i) {
        if (static_cast<int>(rng() % 100) < keep_percent) out.push_back(records_[i]);
      }
      return out;
    };
    std::vector<std::vector<TestRecord>> segs = {range(0, 1500, 100),    range(1000, 2500, 70), range(1200, 1300, 100),
                                                 range(2600, 3300, 100), range(3300, 4000, 100), range(3500, 3600, 50)};
    std::set<Ulid> written;
    for (const auto& seg : segs) {
      WriteSegment(store_.get(), seg);
      for (const auto& r : seg) {
        if (written.insert(r.ulid).second) stored_.push_back(r);
      }
    }
  }

  std::unique_ptr<Matcher> MakeMatcher(MatchSpec spec) {
    auto m = Matcher::Create(spec);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return std::move(m).value();
  }

  Status RunQuery(QueryExecutor& ex, const Matcher& m, ScanRequest req, CollectSink* sink, ScanStats* stats,
                  const std::atomic<bool>* cancel = nullptr) {
    std::atomic<bool> never{false};
    if (req.segments.empty()) req.segments = store_->Select(req.from, req.to);
    return ex.Run(req, m, sink, cancel ? *cancel : never, stats);
  }

  Registry metrics_;
  TempDir dir_;
  std::unique_ptr<StoreLog> store_;
  std::vector<TestRecord> records_;  // every generated record, by ULID
  std::vector<TestRecord> stored_;   // the ones some segment holds
};

TEST_F(ExecutorTest, MatchAllReturnsTheUnionInUlidOrderWithoutDuplicates) {
  QueryExecutor ex({2, 0}, &metrics_);
  auto m = MakeMatcher({});
  CollectSink sink;
  ScanStats stats;
  ScanRequest req{{}, Ulid::MinAt(0), Ulid::Max()};
  ASSERT_TRUE(RunQuery(ex, *m, req, &sink, &stats).ok());
  std::vector<std::string> want = Reference(stored_, *m, req.from, req.to);
  ASSERT_EQ(sink.records.size(), want.size());
  EXPECT_EQ(sink.records, want);
  EXPECT_EQ(stats.segments, 6u);
  EXPECT_EQ(stats.groups, 3u);  // {A,B,C}, {D}, {E,F}
  EXPECT_GT(stats.duplicates, 300u);
  EXPECT_EQ(stats.records, want.size());
  EXPECT_EQ(stats.blocks_read, stats.blocks_selected);
}

// Compaction replaces the segments under running queries: each query's Select keeps the segments
// it chose readable, so every match-all sees every record exactly once. (This lives here, not in
// tests/segments: segments' own tests may not reach the query module.)
TEST_F(ExecutorTest, QueriesSeeEveryRecordExactlyOnceWhileCompactionRuns) {
  QueryExecutor ex({2, 0}, &metrics_);
  auto m = MakeMatcher({});
  std::vector<std::string> want = Reference(stored_, *m, Ulid::MinAt(0), Ulid::Max());
  CompactorOptions o;
  o.target_bytes = 16 << 10;
  o.fanout = 2;
  o.retention.retain = std::chrono::milliseconds(0);
  auto c = Compactor::Create(store_.get(), std::move(o), &metrics_);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::atomic<bool> done{false};
  std::atomic<int> queries{0}, bad{0};
  std::thread reader([&] {
    while (!done || queries < 3) {
      CollectSink sink;
      ScanStats stats;
      if (!RunQuery(ex, *m, ScanRequest{{}, Ulid::MinAt(0), Ulid::Max()}, &sink, &stats).ok() ||
          sink.records != want)
        ++bad;
      ++queries;
    }
  });
  int rounds = 0;
  for (;;) {
    auto r = (*c)->RunOnce();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (!r.value() || ++rounds > 1000) break;
  }
  done = true;
  reader.join();
  EXPECT_GT(rounds, 0);
  EXPECT_EQ(bad.load(), 0) << "of " << queries.load() << " queries";
}

TEST_F(ExecutorTest, RandomQueriesAgreeWithBruteForce) {
  std::mt19937 rng(7);
  const char* kTerms[] = {"timeout", "Timeout", "500", "req=1", "req=2999", "api", "web GET", "k8s", "é", "ſ",
                          "\"x\":1", "KEY", ".", "cache miss", "zzz-absent", "req=37 "};
  const char* kRegexes[] = {"time.ut",         "(?i)timeout",     "^api .*500",     "slow$",   "(?i)key",
                            "req=1[0-9]{2} ",  "(cache|db) (miss|slow)", "^(web|db) req=", "\\d{4}",  "ſ|é",
                            "(?i)KEY\\b",      "^$",               "GET.*POST.*GET", "[a-z]+",  "(?i)ſtatus"};
  for (size_t window : {size_t{1}, size_t{0}}) {
    QueryExecutor ex({2, window}, &metrics_);
    for (int round = 0; round < 120; ++round) {
      MatchSpec spec;
      if (rng() % 2) {
        spec.q = kTerms[rng() % std::size(kTerms)];
      } else {
        spec.q = kRegexes[rng() % std::size(kRegexes)];
        spec.mode = MatchMode::kRegex;
      }
      if (rng() % 4 == 0) spec.topics = {rng() % 2 ? "api" : "db"};
      auto m = MakeMatcher(spec);
      ScanRequest req;
      size_t a = rng() % records_.size(), b = rng() % records_.size();
      if (a > b) std::swap(a, b);
      switch (rng() % 3) {
        case 0:  // exact ULID bounds
          req.from = records_[a].ulid;
          req.to = records_[b].ulid;
          break;
        case 1:  // millisecond bounds
          req.from = Ulid::MinAt(records_[a].ulid.unix_ms());
          req.to = Ulid::MaxAt(records_[b].ulid.unix_ms());
          break;
        default:
          req.from = Ulid::MinAt(0);
          req.to = Ulid::Max();
      }
      std::vector<std::string> want = Reference(stored_, *m, req.from, req.to);
      const bool desc = rng() % 3 == 0;
      if (desc) {
        req.order = ScanOrder::kDescending;
        std::reverse(want.begin(), want.end());
        if (rng() % 2) {
          req.limit = 1 + rng() % 50;
          if (want.size() > *req.limit) want.resize(*req.limit);
        }
      }
      CollectSink sink;
      ScanStats stats;
      ASSERT_TRUE(RunQuery(ex, *m, req, &sink, &stats).ok());
      ASSERT_EQ(sink.records, want) << "q=" << spec.q << " regex=" << (spec.mode == MatchMode::kRegex)
                                    << " desc=" << desc << " window=" << window;
    }
  }
}

TEST_F(ExecutorTest, LimitReturnsTheNewestFirstAndStopsEarly) {
  QueryExecutor ex({2, 0}, &metrics_);
  auto m = MakeMatcher({});
  CollectSink sink;
  ScanStats stats;
  ScanRequest req{{}, Ulid::MinAt(0), Ulid::Max(), ScanOrder::kDescending, 5};
  ASSERT_TRUE(RunQuery(ex, *m, req, &sink, &stats).ok());
  std::vector<std::string> all = Reference(stored_, *m, req.from, req.to);
  std::vector<std::string> want(all.rbegin(), all.rbegin() + 5);
  EXPECT_EQ(sink.records, want);
  EXPECT_LT(stats.blocks_read, 12u) << "the scan should stop soon after the newest blocks";
}

TEST_F(ExecutorTest, RefusingSinkStopsTheScan) {
  QueryExecutor ex({2, 0}, &metrics_);
  auto m = MakeMatcher({});
  CollectSink sink;
  sink.stop_after = 10;
  ScanStats stats;
  Status s = RunQuery(ex, *m, {{}, Ulid::MinAt(0), Ulid::Max()}, &sink, &stats);
  EXPECT_EQ(s.code(), Code::kCancelled);
  EXPECT_EQ(sink.records.size(), 10u);
  EXPECT_LT(stats.blocks_read, stats.blocks_selected / 4);
}

TEST_F(ExecutorTest, CancelFlagStopsTheScanAtTheNextBlock) {
  QueryExecutor ex({2, 0}, &metrics_);
  auto m = MakeMatcher({});
  std::atomic<bool> cancel{false};
  struct CancellingSink : CollectSink {
    std::atomic<bool>* flag;
    bool Add(std::string_view r) override {
      flag->store(true);
      return CollectSink::Add(r);
    }
  } sink;
  sink.flag = &cancel;
  ScanStats stats;
  Status s = RunQuery(ex, *m, {{}, Ulid::MinAt(0), Ulid::Max()}, &sink, &stats, &cancel);
  EXPECT_EQ(s.code(), Code::kCancelled);
  EXPECT_LT(stats.blocks_read, stats.blocks_selected / 4);
  EXPECT_LT(sink.records.size(), stored_.size() / 4);
}

TEST_F(ExecutorTest, NeedleQueryReadsFewBlocks) {
  QueryExecutor ex({2, 0}, &metrics_);
  auto m = MakeMatcher({"req=2999 "});
  CollectSink sink;
  ScanStats stats;
  ASSERT_TRUE(RunQuery(ex, *m, {{}, Ulid::MinAt(0), Ulid::Max()}, &sink, &stats).ok());
  EXPECT_EQ(sink.records, Reference(stored_, *m, Ulid::MinAt(0), Ulid::Max()));
  // How much the filter prunes is the segment format's business; that it prunes at all, and
  // never a block holding a match, is checked here.
  EXPECT_GT(stats.blocks_skipped, 0u);
}

TEST_F(ExecutorTest, ACorruptBlockIsSkippedAndReported) {
  // Damage one byte in the middle of the first block of the disjoint segment D, in place: the
  // open reader sees it at its next read.
  std::shared_ptr<const SegmentReader> d;
  for (const auto& s : store_->All()) {
    if (s->low() == records_[2600].ulid) d = s;
  }
  ASSERT_NE(d, nullptr);
  const BlockInfo& b0 = d->blocks()[0];
  int fd = ::open(d->path().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c;
  ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(b0.offset + b0.compressed_size / 2)), 1);
  c = static_cast<char>(c ^ 0x40);
  ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(b0.offset + b0.compressed_size / 2)), 1);
  ::close(fd);

  QueryExecutor ex({2, 0}, &metrics_);
  std::vector<std::string> reported;
  ex.SetCorruptionHandler([&](const SegmentReader& s, size_t block, const Status& why) {
    reported.push_back(s.path() + "#" + std::to_string(block) + " " + why.ToString());
  });
  auto m = MakeMatcher({});
  CollectSink sink;
  ScanStats stats;
  ASSERT_TRUE(RunQuery(ex, *m, {{}, Ulid::MinAt(0), Ulid::Max()}, &sink, &stats).ok());
  ASSERT_EQ(reported.size(), 1u);
  EXPECT_NE(reported[0].find(d->path() + "#0"), std::string::npos) << reported[0];
  EXPECT_EQ(stats.corrupt_blocks, 1u);
  EXPECT_EQ(sink.records.size(), Reference(stored_, *m, Ulid::MinAt(0), Ulid::Max()).size() - b0.records);
}

TEST_F(ExecutorTest, EmptyRangeAndReversedBounds) {
  QueryExecutor ex({1, 0}, &metrics_);
  auto m = MakeMatcher({});
  CollectSink sink;
  ScanStats stats;
  ScanRequest req{store_->All(), records_[100].ulid, records_[50].ulid};
  ASSERT_TRUE(ex.Run(req, *m, &sink, std::atomic<bool>{false}, &stats).ok());
  EXPECT_TRUE(sink.records.empty());
  ScanRequest none{{}, Ulid::MinAt(0), Ulid::Max()};
  ASSERT_TRUE(ex.Run(none, *m, &sink, std::atomic<bool>{false}, &stats).ok());
  EXPECT_TRUE(sink.records.empty());
}

}  // namespace
}  // namespace oklog
