#include "segments/holdings.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/metrics.h"
#include "segments/record_merge.h"
#include "segments/store_log.h"
#include "test_util.h"

namespace oklog {
namespace {

BatchId Batch(uint64_t ms, uint64_t span_ms = 10) { return {Ulid::MinAt(ms), Ulid::MaxAt(ms + span_ms)}; }

class HoldingsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Holdings> Open() {
    metrics_ = std::make_unique<Registry>();
    auto h = Holdings::Open(Env::Default(), dir_.path(), metrics_.get());
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    return h.ok() ? std::move(h).value() : nullptr;
  }
  std::string LogFile() { return dir_.path() + "/holdings.log"; }
  TempDir dir_;
  std::unique_ptr<Registry> metrics_ = std::make_unique<Registry>();
};

TEST_F(HoldingsTest, ANodeThatNeverHeldABatchWritesNoFile) {
  auto h = Open();
  EXPECT_EQ(h->size(), 0u);
  h.reset();
  EXPECT_FALSE(std::filesystem::exists(LogFile()));
}

TEST_F(HoldingsTest, BatchesSurviveAReopenAndDropsAreKept) {
  auto h = Open();
  h->Add(Batch(1000), 10);
  h->Add(Batch(2000), 20);
  h->Add(Batch(2000), 20);  // again: a no-op
  h->Add(Batch(3000), 30);
  EXPECT_EQ(h->DropBelow(Ulid::MinAt(2500)), 2u);  // 1000 and 2000 lie wholly below
  h.reset();
  h = Open();
  auto snap = h->Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].first, Batch(3000));
  EXPECT_EQ(snap[0].second, 30u);
  // Open rewrote the file with the live entries only.
  EXPECT_EQ(ReadFile(LogFile()), "+ " + Batch(3000).low.ToString() + " " + Batch(3000).high.ToString() + " 30\n");
}

// StoreLog::Open keeps only the batches whose both ends lie in segment files: a replica whose
// file was lost (deleted) or quarantined (corrupt) is no longer claimed, so queries of its range
// ask its other holders instead of trusting this store; the log records the drops, so a later
// open reads the same single batch.
TEST_F(HoldingsTest, AReopenedStoreForgetsBatchesWhoseSegmentFilesAreGoneOrCorrupt) {
  auto records = [](uint64_t ms) {
    std::string out;
    for (int i = 0; i < 50; ++i)
      out += Ulid::FromParts(ms + static_cast<uint64_t>(i), 0, static_cast<uint64_t>(i)).ToString() + " t line\n";
    return out;
  };
  std::vector<std::string> bufs = {records(1000000), records(2000000), records(3000000)};
  {
    auto store = StoreLog::Open(dir_.path(), StoreLogOptions{}, metrics_.get());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (const std::string& b : bufs) {
      ParseStats ps;
      std::vector<std::string_view> recs = ParseRecords(b, &ps);
      ASSERT_TRUE((*store)->WriteReplica(recs).ok());
    }
    ASSERT_EQ((*store)->holdings()->size(), 3u);
    auto segs = (*store)->All();
    ASSERT_EQ(segs.size(), 3u);
    std::filesystem::remove(segs[1]->path());  // a lost file
    // A corrupt footer (a whole-file failure: quarantined; a bad block alone keeps the file and
    // drops its batches too, store_log_test.cpp).
    std::fstream f(segs[2]->path(), std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(-8, std::ios::end);
    f.write("garbage!", 8);
  }
  metrics_ = std::make_unique<Registry>();
  auto store = StoreLog::Open(dir_.path(), StoreLogOptions{}, metrics_.get());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->quarantined(), 1u) << "the corrupt file was not quarantined";
  auto snap = (*store)->holdings()->Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].first.low.unix_ms(), 1000000u);
  EXPECT_EQ(snap[0].first.high.unix_ms(), 1000049u);
  EXPECT_EQ(snap[0].second, 50u);
  store->reset();
  auto h = Open();
  ASSERT_EQ(h->Snapshot(), snap);
}

TEST_F(HoldingsTest, TornAndGarbageLinesAreSkippedAndCounted) {
  {
    std::ofstream f(LogFile());
    f << "+ " << Batch(1000).low.ToString() << " " << Batch(1000).high.ToString() << " 7\n"
      << "garbage\n"
      << "+ " << Batch(2000).high.ToString() << " " << Batch(2000).low.ToString() << " 1\n"  // high < low
      << "+ " << Batch(3000).low.ToString() << " " << Batch(3000).high.ToString() << " x\n"
      << "+ " << Batch(4000).low.ToString() << " " << Batch(4000).high.ToString() << " 9";  // torn
  }
  auto h = Open();
  ASSERT_EQ(h->size(), 1u);
  EXPECT_TRUE(h->Has(Batch(1000)));
  EXPECT_EQ(metrics_->Render().find("oklog_store_holdings_log_errors_total 4") != std::string::npos, true)
      << metrics_->Render();
}

TEST_F(HoldingsTest, SinceGivesTheChangesOrEverythingForAnotherEpoch) {
  auto h = Open();
  h->Add(Batch(1000), 1);
  HoldingsDelta first = h->Since(0, 0);
  EXPECT_TRUE(first.full);
  ASSERT_EQ(first.add.size(), 1u);
  h->Add(Batch(2000), 2);
  h->Retain([](const BatchId& b) { return b != Batch(1000); });
  HoldingsDelta next = h->Since(first.epoch, first.version);
  EXPECT_FALSE(next.full);
  ASSERT_EQ(next.add.size(), 1u);
  EXPECT_EQ(next.add[0].first, Batch(2000));
  ASSERT_EQ(next.drop.size(), 1u);
  EXPECT_EQ(next.drop[0], Batch(1000));
  EXPECT_TRUE(h->Since(next.epoch, next.version).add.empty());
  // A caller from before a restart (another epoch) or from the future gets the whole set.
  EXPECT_TRUE(h->Since(first.epoch + 1, next.version).full);
  EXPECT_TRUE(h->Since(first.epoch, next.version + 5).full);
  // The message round-trips.
  auto d = DecodeHoldingsDelta(EncodeHoldingsDelta(next));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->epoch, next.epoch);
  EXPECT_EQ(d->version, next.version);
  EXPECT_EQ(d->add, next.add);
  EXPECT_EQ(d->drop, next.drop);
  auto req = DecodeHoldingsPull(EncodeHoldingsPull(5, 6));
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(*req, std::make_pair(uint64_t{5}, uint64_t{6}));
}

TEST_F(HoldingsTest, MalformedMessagesAreCorruptionNeverACrash) {
  HoldingsDelta d;
  d.epoch = 1;
  d.version = 2;
  d.add = {{Batch(1000), 3}};
  d.drop = {Batch(2000)};
  const std::string good = EncodeHoldingsDelta(d);
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_EQ(DecodeHoldingsDelta(good.substr(0, n)).status().code(), Code::kCorruption) << n;
  EXPECT_EQ(DecodeHoldingsDelta(good + "x").status().code(), Code::kCorruption);
  const std::string pull = EncodeHoldingsPull(1, 2);
  for (size_t n = 0; n < pull.size(); ++n)
    EXPECT_EQ(DecodeHoldingsPull(pull.substr(0, n)).status().code(), Code::kCorruption) << n;
  // A batch whose high is below its low: refused.
  HoldingsDelta inverted = d;
  inverted.add = {{BatchId{Ulid::MaxAt(2000), Ulid::MinAt(1000)}, 1}};
  EXPECT_EQ(DecodeHoldingsDelta(EncodeHoldingsDelta(inverted)).status().code(), Code::kCorruption);
  // A forged header announcing 2^32-1 entries: refused by the unpacker's limits, not allocated.
  EXPECT_EQ(DecodeHoldingsDelta("\x96\x01\x01\x01\xc2\xdd\xff\xff\xff\xff").status().code(), Code::kCorruption);
  std::mt19937 rng(5);
  for (int i = 0; i < 5000; ++i) {
    std::string b = good;
    b[rng() % b.size()] = static_cast<char>(rng());
    (void)DecodeHoldingsDelta(b);
  }
}

// A drop of copies beyond N (Drop) and a copy's claims (AddAll) are logged like Add: a reopen
// reads the same holdings.
TEST_F(HoldingsTest, ClaimsAndDropsOfCopiesSurviveAReopen) {
  auto h = Open();
  h->AddAll({{Batch(1000), 10}, {Batch(1005), 5}, {Batch(2000), 20}});
  EXPECT_EQ(h->Drop({Batch(1000), Batch(1005), Batch(9000)}), 2u);  // 9000 was never held
  h.reset();
  h = Open();
  EXPECT_EQ(h->Snapshot(), (BatchClaims{{Batch(2000), 20}}));
}

// Ranks are a pure function of store name and bucket (every node computes the same order), and
// spread: over many buckets each of three stores ranks last in about a third of them.
TEST(PlacementTest, RanksAreTheSameEverywhereAndSpreadTheLastPlaceEvenly) {
  EXPECT_EQ(PlacementRank("127.0.0.1:7659", 12345), PlacementRank(std::string("127.0.0.1:") + "7659", 12345));
  EXPECT_NE(PlacementRank("a", 1), PlacementRank("b", 1));
  EXPECT_NE(PlacementRank("a", 1), PlacementRank("a", 2));
  const std::vector<std::string> stores = {"10.99.0.21:7659", "10.99.0.22:7659", "10.99.0.23:7659"};
  std::map<std::string, int> last;
  const int buckets = 30000;
  for (uint64_t k = 0; k < static_cast<uint64_t>(buckets); ++k) {
    std::string worst;
    for (const std::string& s : stores)
      if (worst.empty() || PlacementRank(s, k) > PlacementRank(worst, k)) worst = s;
    last[worst]++;
  }
  for (const std::string& s : stores) EXPECT_NEAR(last[s], buckets / 3, buckets / 30) << s;
  const BatchId r = BucketRange(7, 60000);
  EXPECT_EQ(r.low, Ulid::MinAt(420000));
  EXPECT_EQ(r.high, Ulid::MaxAt(479999));
  EXPECT_EQ(PlacementBucket(r.low, 60000), 7u);
  EXPECT_EQ(PlacementBucket(r.high, 60000), 7u);
}

// segment.copy: claims then the file's bytes. Truncated claims, no file, or bytes of garbage are
// Corruption, never a crash.
TEST_F(HoldingsTest, SegmentCopyMessagesRoundTripAndMalformedOnesAreCorruption) {
  const BatchClaims claims = {{Batch(1000), 3}, {Batch(1002), 4}};
  const std::string body = EncodeSegmentCopy(claims, "FILEBYTES");
  auto c = DecodeSegmentCopy(body);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->claims, claims);
  EXPECT_EQ(c->file, "FILEBYTES");
  EXPECT_EQ(DecodeSegmentCopy(EncodeSegmentCopy(claims, "")).status().code(), Code::kCorruption);  // no file
  const size_t header = body.size() - 9;
  for (size_t n = 0; n < header; ++n)
    EXPECT_EQ(DecodeSegmentCopy(body.substr(0, n)).status().code(), Code::kCorruption) << n;
  BatchClaims inverted = {{BatchId{Ulid::MaxAt(2000), Ulid::MinAt(1000)}, 1}};
  EXPECT_EQ(DecodeSegmentCopy(EncodeSegmentCopy(inverted, "x")).status().code(), Code::kCorruption);
  std::mt19937 rng(9);
  for (int i = 0; i < 5000; ++i) {
    std::string b = body;
    b[rng() % header] = static_cast<char>(rng());
    (void)DecodeSegmentCopy(b);
  }
}

// A copy's receiver notes the claims it was sent, not the file's own name (a mix of batches is no
// batch); claims lying neither within the file's range nor in its bucket are refused with nothing
// stored or noted; a corrupt file is refused as a replica file is.
TEST_F(HoldingsTest, ACopyNotesItsClaimsAndRefusesClaimsOutsideItsRangeAndBucket) {
  StoreLogOptions o;
  o.placement_bucket_ms = 1000;
  auto store = StoreLog::Open(dir_.path(), o, metrics_.get());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto image_of = [](uint64_t ms, int n) {
    auto enc = SegmentEncoder::Create(SegmentWriterOptions{});
    for (int i = 0; i < n; ++i)
      EXPECT_TRUE((*enc)->Append(Ulid::FromParts(ms + static_cast<uint64_t>(i), 0, 1).ToString() + " t x\n").ok());
    return std::move((*enc)->Finish()).value();
  };
  SegmentImage img = image_of(5100, 20);  // ms 5100..5119, bucket 5
  const BatchId a{Ulid::FromParts(5100, 0, 1), Ulid::FromParts(5109, 0, 1)};
  const BatchId b{Ulid::FromParts(5110, 0, 1), Ulid::FromParts(5119, 0, 1)};
  const BatchId elsewhere{Ulid::FromParts(7000, 0, 1), Ulid::FromParts(7005, 0, 1)};
  const BatchId same_bucket{Ulid::FromParts(5500, 0, 1), Ulid::FromParts(5600, 0, 1)};  // bucket 5, outside the file
  auto refused = (*store)->InstallCopy(img.bytes, {{a, 10}, {elsewhere, 6}});
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_EQ((*store)->segment_count(), 0u);
  EXPECT_EQ((*store)->holdings()->size(), 0u);
  auto stored = (*store)->InstallCopy(img.bytes, {{a, 10}, {b, 10}, {same_bucket, 3}});
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(*stored, 20u);
  EXPECT_EQ((*store)->holdings()->Snapshot(), (BatchClaims{{a, 10}, {b, 10}, {same_bucket, 3}}));
  EXPECT_FALSE((*store)->holdings()->Has({img.name.low, img.name.high}));
  std::string corrupt = img.bytes;
  corrupt[corrupt.size() / 2] ^= 0x55;
  EXPECT_EQ((*store)->InstallCopy(corrupt, {{a, 10}}).status().code(), Code::kCorruption);
}

}  // namespace
}  // namespace oklog
