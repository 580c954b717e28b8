#include "segments/retention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "segments/compactor.h"
#include "segments/record_merge.h"
#include "test_util.h"

namespace oklog {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::system_clock;

// One record per millisecond from `ms`, about 100 bytes each.
std::vector<std::string> Records(uint64_t ms, size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(Ulid::FromParts(ms + i, 0, 0).ToString() + " t record at " + std::to_string(ms + i) + " " +
                  std::string(60, static_cast<char>('a' + i % 26)) + "\n");
  return out;
}

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    compactor_.reset();
    store_.reset();
    metrics_ = std::make_unique<Registry>();
    StoreLogOptions o;
    o.writer.block_target_bytes = 4096;  // about 40 records per block
    store_ = std::move(StoreLog::Open(dir_.path(), o, metrics_.get())).value();
  }
  void MakeCompactor(RetentionOptions r) {
    r.clock = [this] { return now_; };
    auto c = Compactor::Create(store_.get(), {.target_bytes = 1 << 20, .retention = r}, metrics_.get());
    ASSERT_TRUE(c.ok());
    compactor_ = std::move(c).value();
  }
  std::shared_ptr<const SegmentReader> AddSegment(const std::vector<std::string>& recs) {
    auto w = store_->NewWriter();
    for (const auto& r : recs) EXPECT_TRUE((*w)->Append(r).ok());
    auto path = (*w)->Finish();
    EXPECT_TRUE(path.ok());
    EXPECT_TRUE(store_->Add(*path).ok());
    for (const auto& s : store_->All())
      if (s->path() == *path) return s;
    return nullptr;
  }
  std::vector<std::string> Stored() {
    std::vector<std::string> out;
    std::string block;
    for (const auto& s : store_->Select(Ulid(), Ulid::Max()))
      for (size_t i = 0; i < s->blocks().size(); ++i) {
        EXPECT_TRUE(s->ReadBlock(i, &block).ok());
        ParseStats ps;
        for (auto r : ParseRecords(block, &ps)) out.emplace_back(r);
      }
    return out;
  }
  void SetNowMs(uint64_t ms) { now_ = Clock::time_point(milliseconds(ms)); }
  bool Has(const std::string& needle) { return metrics_->Render().find(needle) != std::string::npos; }
  size_t TrashFiles() {
    std::string t = dir_.path() + "/trash";
    if (!std::filesystem::exists(t)) return 0;
    return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(t), {}));
  }

  TempDir dir_;
  std::unique_ptr<Registry> metrics_;
  std::unique_ptr<StoreLog> store_;
  std::unique_ptr<Compactor> compactor_;
  Clock::time_point now_;
};

TEST_F(RetentionTest, ABlockExpiresWhenItsNewestRecordIsOlderThanTheCutoffNotAtIt) {
  auto seg = AddSegment(Records(100000, 400));
  ASSERT_GT(seg->blocks().size(), 4u);
  const uint64_t last1 = seg->blocks()[1].last.unix_ms();
  EXPECT_EQ(Retention::FirstLiveBlock(*seg, last1), 1u);      // block 1's newest is at the cutoff: kept
  EXPECT_EQ(Retention::FirstLiveBlock(*seg, last1 + 1), 2u);  // one ms later it has expired
  EXPECT_EQ(Retention::FirstLiveBlock(*seg, seg->high().unix_ms()), seg->blocks().size() - 1);
  EXPECT_EQ(Retention::FirstLiveBlock(*seg, seg->high().unix_ms() + 1), seg->blocks().size());

  // The same boundary through the plan, with now - retain = cutoff.
  Retention r(store_.get(), {.retain = milliseconds(1000), .clock = [&] { return now_; }}, metrics_.get());
  SetNowMs(seg->high().unix_ms() + 1000);
  EXPECT_TRUE(r.Decide().trash.empty());
  SetNowMs(seg->high().unix_ms() + 1001);
  ASSERT_EQ(r.Decide().trash.size(), 1u);
}

TEST_F(RetentionTest, WholeExpiredSegmentsAreTrashedAndNoLongerQueried) {
  auto old_seg = AddSegment(Records(100000, 100));
  auto new_seg = AddSegment(Records(200000, 100));
  MakeCompactor({.retain = milliseconds(50000)});
  SetNowMs(200000 + 50000);  // cutoff 200000: the new segment's first record is exactly at it
  ASSERT_TRUE(compactor_->RunOnce().ok());
  EXPECT_EQ(Stored(), Records(200000, 100));
  EXPECT_EQ(TrashFiles(), 1u);
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/trash/" + SegmentName{old_seg->low(), old_seg->high()}.FileName()));
  EXPECT_TRUE(Has("oklog_store_trashed_segments{success=\"true\"} 1"));
  // A restart does not bring it back, nor quarantines the trash.
  Reopen();
  EXPECT_EQ(Stored(), Records(200000, 100));
  EXPECT_EQ(store_->quarantined(), 0u);
}

TEST_F(RetentionTest, LeadingExpiredBlocksAreDroppedOnlyWhenThatSavesEnough) {
  auto recs = Records(100000, 1000);
  auto seg = AddSegment(recs);
  const auto& blocks = seg->blocks();
  ASSERT_GT(blocks.size(), 10u);
  MakeCompactor({.retain = milliseconds(1000), .min_rewrite_fraction = 0.5});
  // A third of the blocks expired: not worth a rewrite yet.
  const size_t third = blocks.size() / 3;
  SetNowMs(blocks[third - 1].last.unix_ms() + 1 + 1000);
  auto r = compactor_->RunOnce();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value());
  EXPECT_EQ(Stored(), recs);
  // Two thirds: the segment is rewritten from its first live block, whole blocks only.
  const size_t two_thirds = 2 * blocks.size() / 3;
  const Ulid first_kept = blocks[two_thirds].first;
  SetNowMs(blocks[two_thirds - 1].last.unix_ms() + 1 + 1000);
  r = compactor_->RunOnce();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r.value());
  auto kept = Stored();
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(kept.front().substr(0, 26), first_kept.ToString());
  EXPECT_EQ(kept, std::vector<std::string>(recs.end() - static_cast<ptrdiff_t>(kept.size()), recs.end()));
  EXPECT_EQ(TrashFiles(), 0u);  // a rewrite deletes the old file; nothing was trashed
}

// Rounds until retention has nothing more to do (bounded).
#define OKLOG_RUN_UNTIL_SETTLED()                                       \
  for (int round = 0; round < 20; ++round) {                             \
    auto r = compactor_->RunOnce();                                      \
    ASSERT_TRUE(r.ok()) << r.status().ToString();                        \
    if (!r.value()) break;                                               \
    ASSERT_LT(round, 19) << "retention did not settle";                  \
  }

// True when `kept` is the newest kept.size() records of `all`, in order.
bool IsNewestSuffix(const std::vector<std::string>& kept, const std::vector<std::string>& all) {
  return kept.size() <= all.size() &&
         std::equal(kept.begin(), kept.end(), all.end() - static_cast<ptrdiff_t>(kept.size()));
}

TEST_F(RetentionTest, SizeLimitTrimsTheOldestBlocksFirstAcrossSegments) {
  std::vector<std::shared_ptr<const SegmentReader>> segs;
  std::vector<std::string> all;
  for (int i = 0; i < 5; ++i) {
    auto recs = Records(100000 + 10000 * i, 200);
    all.insert(all.end(), recs.begin(), recs.end());
    segs.push_back(AddSegment(recs));
  }
  ASSERT_GE(segs[2]->blocks().size(), 4u);
  const uint64_t keep = segs[3]->file_bytes() + segs[4]->file_bytes();
  const uint64_t limit = keep + segs[2]->file_bytes() / 2;
  MakeCompactor({.retain = milliseconds(0), .max_bytes = limit});
  SetNowMs(1000000);
  OKLOG_RUN_UNTIL_SETTLED();
  const auto kept = Stored();
  // The newest records, and only they: all of the two newest segments, the newer part of the
  // middle one (block by block), nothing older.
  EXPECT_TRUE(IsNewestSuffix(kept, all));
  EXPECT_GT(kept.size(), 400u);
  EXPECT_LT(kept.size(), 600u);
  EXPECT_LE(store_->file_bytes(), limit);
  EXPECT_EQ(TrashFiles(), 2u);  // the two oldest whole; the middle one was rewritten shorter
  EXPECT_TRUE(Has("oklog_store_trashed_segments{success=\"true\"} 2"));
  // Exactly at the limit: nothing more goes.
  MakeCompactor({.retain = milliseconds(0), .max_bytes = store_->file_bytes()});
  OKLOG_RUN_UNTIL_SETTLED();
  EXPECT_EQ(Stored(), kept);
}

// The newest segment alone over the limit keeps its newest blocks (it used to be trashed whole,
// leaving an empty store); a limit below one block keeps the newest block.
TEST_F(RetentionTest, SizeLimitBelowTheNewestSegmentKeepsItsNewestBlocks) {
  auto older = Records(100000, 300);
  auto newest = Records(200000, 1000);
  AddSegment(older);
  auto big = AddSegment(newest);
  ASSERT_GT(big->blocks().size(), 10u);
  const uint64_t limit = big->file_bytes() / 3;
  MakeCompactor({.retain = milliseconds(0), .max_bytes = limit});
  SetNowMs(1000000);
  OKLOG_RUN_UNTIL_SETTLED();
  auto kept = Stored();
  ASSERT_FALSE(kept.empty());
  EXPECT_TRUE(IsNewestSuffix(kept, newest));
  EXPECT_GT(kept.size(), 200u);
  EXPECT_LE(store_->file_bytes(), limit);
  // A limit of 1 byte: the newest block stays.
  MakeCompactor({.retain = milliseconds(0), .max_bytes = 1});
  OKLOG_RUN_UNTIL_SETTLED();
  kept = Stored();
  ASSERT_FALSE(kept.empty());
  EXPECT_TRUE(IsNewestSuffix(kept, newest));
  EXPECT_LE(kept.size(), 60u);  // about 40 records a block
  ASSERT_EQ(store_->segment_count(), 1u);
  EXPECT_EQ(store_->All().front()->blocks().size(), 1u);
}

TEST_F(RetentionTest, TrashIsPurgedOnlyAfterThePurgeDelay) {
  AddSegment(Records(100000, 50));
  MakeCompactor({.retain = milliseconds(1000), .purge = milliseconds(60000)});
  SetNowMs(500000);
  ASSERT_TRUE(compactor_->RunOnce().ok());
  EXPECT_EQ(TrashFiles(), 1u);
  SetNowMs(500000 + 59999);
  ASSERT_TRUE(compactor_->RunOnce().ok());
  EXPECT_EQ(TrashFiles(), 1u);
  EXPECT_FALSE(Has("oklog_store_purged_segments{success=\"true\"} 1"));
  SetNowMs(500000 + 60000);
  ASSERT_TRUE(compactor_->RunOnce().ok());
  EXPECT_EQ(TrashFiles(), 0u);
  EXPECT_TRUE(Has("oklog_store_purged_segments{success=\"true\"} 1"));
}

TEST_F(RetentionTest, ZeroRetainKeepsEverything) {
  auto recs = Records(1, 100);
  AddSegment(recs);
  MakeCompactor({.retain = milliseconds(0)});
  SetNowMs(4000000000000);
  ASSERT_TRUE(compactor_->RunOnce().ok());
  EXPECT_EQ(Stored(), recs);
}

}  // namespace
}  // namespace oklog
