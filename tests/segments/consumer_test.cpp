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

}  // namespace
}  // namespace oklog
