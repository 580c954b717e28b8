#include "segments/consumer.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "segments/record_merge.h"
#include "test_util.h"

namespace oklog {
namespace {

std::string Rec(uint64_t ms, uint64_t n, const std::string& text) {
  return Ulid::FromParts(ms, 0, n).ToString() + " t " + text + "\n";
}

class ConsumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ingest_ = std::move(IngestLog::Open(dir_.path() + "/ingest", {}, &m_)).value();
    auto s = StoreLog::Open(dir_.path() + "/store", {}, &m_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  void AddIngestSegment(const std::string& data) {
    auto seg = ingest_->NewActive();
    ASSERT_TRUE((*seg)->Append(data.data(), data.size()).ok());
    ASSERT_TRUE(ingest_->Flush(std::move(seg).value(), "test").ok());
  }
  std::string StoredText() {
    std::string all, block;
    for (const auto& s : store_->All())
      for (size_t i = 0; i < s->blocks().size(); ++i) {
        EXPECT_TRUE(s->ReadBlock(i, &block).ok());
        all += block;
      }
    return all;
  }
  TempDir dir_;
  Registry m_;
  std::unique_ptr<IngestLog> ingest_;
  std::unique_ptr<StoreLog> store_;
};

TEST_F(ConsumerTest, MergesSortsDedupsAndCommits) {
  AddIngestSegment(Rec(1, 0, "a") + Rec(3, 0, "c") + Rec(5, 0, "e"));
  AddIngestSegment(Rec(4, 0, "d") + Rec(2, 0, "b") + "not a record\n" + Rec(3, 0, "c"));  // unsorted, dup
  auto c = LocalConsumer::Start(ingest_.get(), store_.get(), {}, &m_);
  ASSERT_TRUE(WaitFor([&] { return ingest_->flushed_count() == 0 && ingest_->pending_count() == 0; },
                      std::chrono::seconds(10)));
  c->Stop();
  EXPECT_EQ(StoredText(), Rec(1, 0, "a") + Rec(2, 0, "b") + Rec(3, 0, "c") + Rec(4, 0, "d") + Rec(5, 0, "e"));
  EXPECT_EQ(store_->segment_count(), 1u);
  EXPECT_NE(m_.Render().find("oklog_store_invalid_records_total 1"), std::string::npos);
  EXPECT_NE(m_.Render().find("oklog_store_duplicate_records_total 1"), std::string::npos);
}

TEST_F(ConsumerTest, ReconsumingAfterCrashBeforeCommitIsSafe) {
  std::string data = Rec(1, 0, "a") + Rec(2, 0, "b");
  AddIngestSegment(data);
  auto c = LocalConsumer::Start(ingest_.get(), store_.get(), {}, &m_);
  ASSERT_TRUE(WaitFor([&] { return store_->segment_count() == 1 && ingest_->flushed_count() == 0; },
                      std::chrono::seconds(10)));
  c->Stop();
  // The same ingest segment again, as if the commit had not happened before a crash.
  std::unique_ptr<IngestLog> fresh;
  ingest_.reset();
  fresh = std::move(IngestLog::Open(dir_.path() + "/ingest", {}, &m_)).value();
  ingest_ = std::move(fresh);
  AddIngestSegment(data);
  auto r = LocalConsumer::Start(ingest_.get(), store_.get(), {}, &m_);
  ASSERT_TRUE(WaitFor([&] { return ingest_->flushed_count() == 0 && ingest_->pending_count() == 0; },
                      std::chrono::seconds(10)));
  r->Stop();
  EXPECT_EQ(store_->segment_count(), 1u);
  EXPECT_EQ(StoredText(), data);
}

TEST_F(ConsumerTest, LargeBatchIsWrittenAsNonOverlappingParallelSegments) {
  std::string data;
  for (int i = 0; i < 20000; ++i) data += Rec(1000 + static_cast<uint64_t>(i), 0, "payload " + std::to_string(i));
  AddIngestSegment(data);
  ConsumerOptions o;
  o.parallel_min_bytes = 1;
  o.max_parallel_writers = 4;
  auto c = LocalConsumer::Start(ingest_.get(), store_.get(), o, &m_);
  ASSERT_TRUE(WaitFor([&] { return ingest_->flushed_count() == 0 && ingest_->pending_count() == 0; },
                      std::chrono::seconds(10)));
  c->Stop();
  auto segs = store_->All();
  size_t want = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
  EXPECT_EQ(segs.size(), want);
  for (size_t i = 1; i < segs.size(); ++i) EXPECT_LT(segs[i - 1]->high(), segs[i]->low());
  EXPECT_EQ(StoredText(), data);
}

TEST_F(ConsumerTest, SegmentOfOnlyGarbageIsDroppedAndCounted) {
  AddIngestSegment("garbage\nmore garbage\n");
  auto c = LocalConsumer::Start(ingest_.get(), store_.get(), {}, &m_);
  ASSERT_TRUE(WaitFor([&] { return ingest_->flushed_count() == 0 && ingest_->pending_count() == 0; },
                      std::chrono::seconds(10)));
  c->Stop();
  EXPECT_EQ(store_->segment_count(), 0u);
}

TEST(StoreLogTest, CorruptOrTruncatedSegmentsAreQuarantinedNotDeleted) {
  TempDir dir;
  Registry m;
  std::string good_path, bad_path, short_path;
  {
    auto store = std::move(StoreLog::Open(dir.path(), {}, &m)).value();
    for (int k = 0; k < 3; ++k) {
      auto w = std::move(store->NewWriter()).value();
      for (int i = 0; i < 1000; ++i) ASSERT_TRUE(w->Append(Rec(100 * k + 1, static_cast<uint64_t>(i), "x" + std::to_string(i))).ok());
      auto p = w->Finish();
      ASSERT_TRUE(p.ok());
      (k == 0 ? good_path : k == 1 ? bad_path : short_path) = p.value();
    }
  }
  std::string data = ReadFile(bad_path);
  data[data.size() / 3] ^= 0x40;  // a byte inside a block
  WriteFile(bad_path, data);
  std::string s = ReadFile(short_path);
  WriteFile(short_path, s.substr(0, s.size() - 7));
  WriteFile(dir.path() + "/.01ARYZ6S41TSV4RRFFQ69G5FAV-01ARYZ6S41TSV4RRFFQ69G5FAV.seg.tmp", "partial");
  WriteFile(dir.path() + "/README.txt", "not ours");
  auto store = StoreLog::Open(dir.path(), {}, &m);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->segment_count(), 1u);
  EXPECT_EQ((*store)->quarantined(), 2u);
  namespace fs = std::filesystem;
  EXPECT_TRUE(fs::exists(dir.path() + "/quarantine/" + fs::path(bad_path).filename().string()));
  EXPECT_TRUE(fs::exists(dir.path() + "/quarantine/" + fs::path(short_path).filename().string()));
  EXPECT_FALSE(fs::exists(dir.path() + "/.01ARYZ6S41TSV4RRFFQ69G5FAV-01ARYZ6S41TSV4RRFFQ69G5FAV.seg.tmp"));
  EXPECT_TRUE(fs::exists(dir.path() + "/README.txt"));
}

TEST(StoreLogTest, SelectReturnsOverlappingSegmentsInOrder) {
  TempDir dir;
  Registry m;
  auto store = std::move(StoreLog::Open(dir.path(), {}, &m)).value();
  for (auto [lo, hi] : std::vector<std::pair<int, int>>{{30, 40}, {10, 20}, {15, 35}}) {
    auto w = std::move(store->NewWriter()).value();
    ASSERT_TRUE(w->Append(Rec(static_cast<uint64_t>(lo), 0, "a")).ok());
    ASSERT_TRUE(w->Append(Rec(static_cast<uint64_t>(hi), 0, "b")).ok());
    ASSERT_TRUE(store->Add(w->Finish().value()).ok());
  }
  auto sel = store->Select(Ulid::MinAt(21), Ulid::MaxAt(29));
  ASSERT_EQ(sel.size(), 1u);
  EXPECT_EQ(sel[0]->low().unix_ms(), 15u);
  sel = store->Select(Ulid::MinAt(0), Ulid::MaxAt(100));
  ASSERT_EQ(sel.size(), 3u);
  EXPECT_EQ(sel[0]->low().unix_ms(), 10u);
  EXPECT_EQ(sel[2]->low().unix_ms(), 30u);
}

}  // namespace
}  // namespace oklog
