#include "segments/store_log.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "segments/record_merge.h"
#include "test_util.h"

namespace oklog {
namespace {

namespace fs = std::filesystem;

std::string Rec(uint64_t ms, uint64_t n, const std::string& text) {
  return Ulid::FromParts(ms, 0, n).ToString() + " t " + text + "\n";
}

std::string SegName(uint64_t low_ms, uint64_t high_ms) {
  return Ulid::MinAt(low_ms).ToString() + "-" + Ulid::MaxAt(high_ms).ToString() + ".seg";
}

// Whole-file failures (a bad footer, a truncated file) quarantine the whole segment, as before
// bad blocks were told apart.
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
  data[data.size() - 20] ^= 0x40;  // a byte of the footer: the index cannot be trusted, nor the file
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

// A flipped byte inside block k of a multi-block segment: the segment stays (its other blocks are
// queryable), block k is marked bad and counted once, and its range becomes a gap that lists
// the batch it overlapped; that batch leaves the holdings (repair brings it back) while a batch
// elsewhere stays. The gap survives restarts without being noted twice, and heals, for good,
// once the batch is held again.
TEST(StoreLogTest, AFlippedByteInOneBlockMarksThatBlockAndKeepsTheSegment) {
  TempDir dir;
  StoreLogOptions opts;
  opts.writer.block_target_bytes = 4096;
  std::string victim;
  BatchId hit, other;
  {
    Registry m;
    auto store = std::move(StoreLog::Open(dir.path(), opts, &m)).value();
    for (int k = 0; k < 2; ++k) {
      auto w = std::move(store->NewWriter()).value();
      for (int i = 0; i < 1000; ++i)
        ASSERT_TRUE(w->Append(Rec(10000 * k + 1, static_cast<uint64_t>(i), "x" + std::to_string(i))).ok());
      auto p = w->Finish();
      ASSERT_TRUE(p.ok());
      ASSERT_TRUE(store->Add(*p).ok());
      if (k == 0) victim = *p;
    }
    auto segs = store->All();
    hit = {segs[0]->low(), segs[0]->high()};
    other = {segs[1]->low(), segs[1]->high()};
    store->holdings()->Add(hit, 1000);
    store->holdings()->Add(other, 1000);
  }
  auto reader = std::move(SegmentReader::Open(victim)).value();
  ASSERT_GE(reader->blocks().size(), 5u);
  const BlockInfo b2 = reader->blocks()[2];
  std::string data = ReadFile(victim);
  data[b2.offset + b2.compressed_size / 2] ^= 0x40;
  WriteFile(victim, data);

  {
    Registry m;
    auto store = std::move(StoreLog::Open(dir.path(), opts, &m)).value();
    EXPECT_EQ(store->segment_count(), 2u);
    EXPECT_EQ(store->quarantined(), 0u);
    EXPECT_FALSE(fs::exists(dir.path() + "/quarantine/" + fs::path(victim).filename().string()));
    EXPECT_EQ(store->blocks_quarantined(), 1u);
    EXPECT_EQ(SeriesValue(m.Render(), "oklog_store_blocks_quarantined_total"), 1);
    const auto seg = store->All()[0];
    EXPECT_TRUE(seg->BlockBad(2));
    for (size_t i = 0; i < seg->blocks().size(); ++i) {
      std::string text;
      EXPECT_EQ(seg->ReadBlock(i, &text).ok(), i != 2) << i;
    }
    auto gaps = store->UnhealedGaps(Ulid::MinAt(0), Ulid::Max());
    ASSERT_EQ(gaps.size(), 1u);
    EXPECT_EQ(gaps[0].low, b2.first);
    EXPECT_EQ(gaps[0].high, b2.last);
    EXPECT_EQ(gaps[0].records, b2.records);
    EXPECT_EQ(gaps[0].batches, std::vector<BatchId>{hit});
    EXPECT_FALSE(store->holdings()->Has(hit));
    EXPECT_TRUE(store->holdings()->Has(other));
    EXPECT_TRUE(store->UnhealedGaps(other.low, other.high).empty());
  }
  {
    Registry m;
    auto store = std::move(StoreLog::Open(dir.path(), opts, &m)).value();
    EXPECT_EQ(store->blocks_quarantined(), 1u);  // found again at start, reported again
    EXPECT_EQ(store->UnhealedGaps(Ulid::MinAt(0), Ulid::Max()).size(), 1u);
    EXPECT_EQ(store->gaps()->unhealed(), 1u);
    store->holdings()->Add(hit, 1000);  // a repair copy brought the batch back
    EXPECT_TRUE(store->UnhealedGaps(Ulid::MinAt(0), Ulid::Max()).empty());
  }
  Registry m;
  auto store = std::move(StoreLog::Open(dir.path(), opts, &m)).value();
  EXPECT_TRUE(store->All()[0]->BlockBad(2));  // still skipped: the copy holds its records
  EXPECT_TRUE(store->UnhealedGaps(Ulid::MinAt(0), Ulid::Max()).empty());
  EXPECT_TRUE(store->holdings()->Has(hit));  // a healed gap is not dropped again
}

// The repair half that lands here: a store whose replica has a bad block no longer holds its
// batch (peers see it gone and repair copies it from a good replica); the copy (segment.copy,
// StoreLog::InstallCopy: a good file of the same records, whose name the damaged file takes)
// is stored around the damaged file, notes the batch again and heals the gap, and every record
// is readable again, the bad block's from the copy.
TEST(StoreLogTest, ARepairCopyOfABadBlocksBatchHealsItsGap) {
  TempDir dir;
  StoreLogOptions opts;
  opts.writer.block_target_bytes = 4096;
  std::vector<std::string> recs;
  for (int i = 0; i < 1000; ++i) recs.push_back(Rec(5000, static_cast<uint64_t>(i), "x" + std::to_string(i)));
  const std::vector<std::string_view> views(recs.begin(), recs.end());
  const BatchId batch{*Ulid::ParseCanonical(recs.front().data()), *Ulid::ParseCanonical(recs.back().data())};
  std::string path;
  {
    Registry m;
    auto store = std::move(StoreLog::Open(dir.path(), opts, &m)).value();
    ASSERT_TRUE(store->WriteReplica(views).ok());
    ASSERT_TRUE(store->holdings()->Has(batch));
    path = store->All()[0]->path();
  }
  auto reader = std::move(SegmentReader::Open(path)).value();
  const BlockInfo b3 = reader->blocks().at(3);
  std::string data = ReadFile(path);
  data[b3.offset + 3] ^= 0x01;
  WriteFile(path, data);

  Registry m;
  auto store = std::move(StoreLog::Open(dir.path(), opts, &m)).value();
  EXPECT_FALSE(store->holdings()->Has(batch));  // what the peers pull: this copy is gone
  ASSERT_EQ(store->UnhealedGaps(batch.low, batch.high).size(), 1u);

  auto enc = std::move(SegmentEncoder::Create(opts.writer)).value();
  for (const auto& r : recs) ASSERT_TRUE(enc->Append(r).ok());
  SegmentImage good = std::move(enc->Finish()).value();
  auto stored = store->InstallCopy(good.bytes, {{batch, recs.size()}});
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_TRUE(store->holdings()->Has(batch));
  EXPECT_TRUE(store->UnhealedGaps(batch.low, batch.high).empty());
  EXPECT_EQ(store->gaps()->unhealed(), 0u);
  std::set<std::string> seen;
  for (const auto& seg : store->All())
    for (size_t i = 0; i < seg->blocks().size(); ++i) {
      std::string text;
      if (!seg->ReadBlock(i, &text).ok()) continue;  // the damaged block, stepped over
      ParseStats ps;
      for (auto r : ParseRecords(text, &ps)) seen.emplace(r);
    }
  EXPECT_EQ(seen, std::set<std::string>(recs.begin(), recs.end()));
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

TEST(StoreLogTest, NonRegularFilesNamedLikeSegmentsAreSkippedAndCountedWithoutBlocking) {
  TempDir dir;
  {
    Registry m;
    auto store = std::move(StoreLog::Open(dir.path(), {}, &m)).value();
    auto w = std::move(store->NewWriter()).value();
    ASSERT_TRUE(w->Append(Rec(10, 0, "kept")).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  const std::string fifo = dir.path() + "/" + SegName(20, 30);
  const std::string replaced = dir.path() + "/" + SegName(40, 50) + ".replaced";
  const std::string subdir = dir.path() + "/" + SegName(60, 70);
  const std::string link = dir.path() + "/" + SegName(80, 90);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo(replaced.c_str(), 0644), 0);
  fs::create_directory(subdir);
  fs::create_symlink(fifo, link);

  Registry m;
  Result<std::unique_ptr<StoreLog>> store = Status::Cancelled("not opened");
  ASSERT_TRUE(ReturnsWithin(std::chrono::seconds(5), [&] { store = StoreLog::Open(dir.path(), {}, &m); },
                            {fifo, replaced}))
      << "StoreLog::Open blocked on a FIFO";
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->segment_count(), 1u);
  EXPECT_EQ((*store)->skipped_files(), 4u);
  EXPECT_EQ((*store)->quarantined(), 0u);  // not ours to move: left where it is
  EXPECT_EQ(SeriesValue("\n" + m.Render(), "oklog_store_skipped_files_total"), 4);
  for (const std::string& p : {fifo, replaced, subdir, link}) EXPECT_TRUE(fs::exists(fs::symlink_status(p))) << p;
  EXPECT_FALSE(fs::exists(dir.path() + "/quarantine/" + fs::path(fifo).filename().string()));
}

TEST(StoreLogTest, AHoldingsLogThatIsAFifoFailsOpenInsteadOfBlocking) {
  TempDir dir;
  const std::string fifo = dir.path() + "/holdings.log";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  Registry m;
  Result<std::unique_ptr<StoreLog>> store = Status::Cancelled("not opened");
  ASSERT_TRUE(ReturnsWithin(std::chrono::seconds(5), [&] { store = StoreLog::Open(dir.path(), {}, &m); }, {fifo}))
      << "StoreLog::Open blocked on a FIFO";
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument) << store.status().ToString();
}

}  // namespace
}  // namespace oklog
