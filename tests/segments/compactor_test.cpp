#include "segments/compactor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <functional>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include "common/fs/fault_injection_env.h"
#include "segments/record_merge.h"
#include "test_util.h"

namespace oklog {
namespace {

// A record whose ULID sorts by (ms, n) and whose text is derived from both, so duplicates are
// byte-identical, as replicas are.
std::string Rec(uint64_t ms, uint64_t n, size_t pad = 40) {
  std::string text = "line " + std::to_string(ms) + "/" + std::to_string(n) + " ";
  text.append(pad, static_cast<char>('a' + (ms + n) % 26));
  return Ulid::FromParts(ms, 0, n).ToString() + " t " + text + "\n";
}

class CompactorTest : public ::testing::Test {
 public:  // CrashAtEveryStep drives the fixture
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>();
    Reopen();
  }
  const std::string& dir() const { return tmp_->path(); }
  // Moves the test to a fresh directory in /dev/shm when there is one: tests that write
  // hundreds of segments would otherwise wait seconds on fsyncs.
  void UseShm() {
    if (!std::filesystem::is_directory("/dev/shm")) return;
    const char* old = std::getenv("TMPDIR");
    std::string saved = old ? old : "";
    ::setenv("TMPDIR", "/dev/shm", 1);
    tmp_ = std::make_unique<TempDir>();
    if (old) ::setenv("TMPDIR", saved.c_str(), 1); else ::unsetenv("TMPDIR");
    Reopen();
  }
  void Reopen() {
    compactor_.reset();
    store_.reset();
    metrics_ = std::make_unique<Registry>();
    StoreLogOptions o;
    o.writer.block_target_bytes = 4096;
    o.env = &env_;
    auto s = StoreLog::Open(dir(), o, metrics_.get());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  void MakeCompactor(CompactorOptions o) {
    o.retention.retain = std::chrono::milliseconds(0);
    auto c = Compactor::Create(store_.get(), std::move(o), metrics_.get());
    ASSERT_TRUE(c.ok());
    compactor_ = std::move(c).value();
  }
  // Writes a segment of these records (sorted and deduplicated here) and adds it to the store.
  // Returns its file bytes.
  uint64_t AddSegment(std::vector<std::string> recs) {
    std::sort(recs.begin(), recs.end());
    recs.erase(std::unique(recs.begin(), recs.end()), recs.end());
    auto w = store_->NewWriter();
    EXPECT_TRUE(w.ok());
    for (const auto& r : recs) EXPECT_TRUE((*w)->Append(r).ok());
    auto path = (*w)->Finish();
    EXPECT_TRUE(path.ok()) << path.status().ToString();
    if (!path.ok()) return 0;
    EXPECT_TRUE(store_->Add(*path).ok());
    return std::filesystem::file_size(*path);
  }
  // Every stored record of every segment, in segment order, duplicates kept.
  std::vector<std::string> RawRecords() {
    std::vector<std::string> out;
    std::string block;
    for (const auto& s : store_->All())
      for (size_t i = 0; i < s->blocks().size(); ++i) {
        EXPECT_TRUE(s->ReadBlock(i, &block).ok());
        ParseStats ps;
        for (auto r : ParseRecords(block, &ps)) out.emplace_back(r);
      }
    return out;
  }
  // What a reader of the store sees: the segments of one Select (a snapshot that compaction may
  // replace underneath), each read block by block through its own SegmentReader, merged by ULID
  // with duplicates dropped, as a query merges them. Read through segments' own API so that this
  // test does not depend on src/query (tests/segments may reach only what segments reaches).
  std::vector<std::string> ReadDistinct() {
    std::vector<std::string> buffers;
    std::string block;
    for (const auto& s : store_->Select(Ulid(), Ulid::Max())) {
      std::string& all = buffers.emplace_back();
      for (size_t i = 0; i < s->blocks().size(); ++i) {
        Status st = s->ReadBlock(i, &block);
        EXPECT_TRUE(st.ok()) << st.ToString();
        all += block;
      }
    }
    MergedRecords m = MergeBuffers(std::vector<std::string_view>(buffers.begin(), buffers.end()));
    return std::vector<std::string>(m.records.begin(), m.records.end());
  }
  // Runs rounds until the policy finds nothing more to do.
  int CompactFully() {
    int rounds = 0;
    for (;;) {
      auto r = compactor_->RunOnce();
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok() || !r.value()) return rounds;
      if (++rounds > 10000) return rounds;
    }
  }
  void ExpectNoOverlapAndNoDuplicates(const std::vector<std::string>& expected) {
    EXPECT_EQ(RawRecords(), expected);
    auto segs = store_->All();
    for (size_t i = 1; i < segs.size(); ++i) EXPECT_LT(segs[i - 1]->high(), segs[i]->low());
  }
  uint64_t Metric(const std::string& line_prefix) {
    std::string text = metrics_->Render();
    auto p = text.find("\n" + line_prefix + " ");
    if (p == std::string::npos) return 0;
    return std::stoull(text.substr(p + line_prefix.size() + 2));
  }

  // A power cut: the process dies (store and compactor gone), the disk keeps only what was
  // made durable, and the node starts again from it.
  void PowerLossAndRestart() {
    compactor_.reset();
    store_.reset();
    Status s = env_.SimulatePowerLoss();
    ASSERT_TRUE(s.ok()) << s.ToString();
    Reopen();
  }

  FaultInjectionEnv env_;  // every file operation of the store; declared first, destroyed last
  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<Registry> metrics_;
  std::unique_ptr<StoreLog> store_;
  std::unique_ptr<Compactor> compactor_;
};

// Random overlapping segments drawn from one universe of records, with duplicates.
std::vector<std::vector<std::string>> RandomSegments(std::mt19937_64& rng, size_t segments, size_t universe,
                                                     std::vector<std::string>* distinct) {
  std::vector<std::string> all;
  for (size_t i = 0; i < universe; ++i) all.push_back(Rec(1000 + i / 3, i % 3, rng() % 80));
  std::vector<std::vector<std::string>> out(segments);
  std::set<std::string> used;
  for (auto& seg : out) {
    size_t lo = rng() % universe, len = 1 + rng() % (universe / 3);
    for (size_t i = lo; i < std::min(universe, lo + len); ++i)
      if (rng() % 3 != 0) {
        seg.push_back(all[i]);
        used.insert(all[i]);
      }
    if (seg.empty()) {
      seg.push_back(all[lo]);
      used.insert(all[lo]);
    }
  }
  distinct->assign(used.begin(), used.end());
  return out;
}

TEST_F(CompactorTest, MergesRandomOverlappingSegmentsIntoExactlyTheDistinctRecordsSorted) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    std::filesystem::remove_all(dir());
    Reopen();
    std::mt19937_64 rng(seed);
    std::vector<std::string> distinct;
    for (auto& seg : RandomSegments(rng, 12, 3000, &distinct)) AddSegment(seg);
    MakeCompactor({.target_bytes = 64 << 10});
    auto r = compactor_->Compact(store_->All());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->records, distinct.size());
    EXPECT_GT(r->duplicates, 0u);
    ExpectNoOverlapAndNoDuplicates(distinct);
    // Outputs are split at the target size: at most one record past it.
    auto segs = store_->All();
    EXPECT_GT(segs.size(), 1u);
    for (const auto& s : segs) EXPECT_LT(s->raw_bytes(), (64u << 10) + 200);
    // Nothing left behind in the directory but the segments.
    size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir())) {
      EXPECT_EQ(e.path().extension(), ".seg") << e.path();
      ++files;
    }
    EXPECT_EQ(files, segs.size());
    EXPECT_EQ(Metric("oklog_store_compaction_runs_total{result=\"ok\"}"), 1u);
    EXPECT_GT(Metric("oklog_store_compaction_bytes_written_total"), 0u);
    EXPECT_GT(Metric("oklog_store_compaction_bytes_read_total"), 0u);
  }
}

TEST_F(CompactorTest, PolicyRunsUntilNoDuplicateAndOnlyTinyOverlapsRemain) {
  for (uint64_t seed = 7; seed <= 10; ++seed) {
    tmp_ = std::make_unique<TempDir>();
    Reopen();
    std::mt19937_64 rng(seed);
    std::vector<std::string> distinct;
    for (auto& seg : RandomSegments(rng, 20, 2000, &distinct)) AddSegment(seg);
    MakeCompactor({.target_bytes = 32 << 10, .fanout = 8});
    EXPECT_GT(CompactFully(), 0);
    auto raw = RawRecords();
    std::sort(raw.begin(), raw.end());
    EXPECT_EQ(raw, distinct);
    // What overlaps is left is a segment under 1/fanout of the one it overlaps.
    auto segs = store_->All();
    for (size_t i = 1; i < segs.size(); ++i)
      if (segs[i - 1]->high() >= segs[i]->low()) {
        EXPECT_LT(8 * std::min(segs[i - 1]->raw_bytes(), segs[i]->raw_bytes()),
                  std::max(segs[i - 1]->raw_bytes(), segs[i]->raw_bytes()));
      }
  }
}

TEST_F(CompactorTest, OutputTakingAnInputsNameReplacesIt) {
  std::vector<std::string> a, b;
  for (int i = 0; i < 100; ++i) a.push_back(Rec(1000 + i, 0));
  for (int i = 40; i < 60; ++i) b.push_back(Rec(1000 + i, 1));
  AddSegment(a);
  AddSegment(b);
  std::string a_name = store_->All()[0]->path();
  MakeCompactor({});
  auto r = compactor_->Compact(store_->All());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(store_->segment_count(), 1u);
  EXPECT_EQ(store_->All()[0]->path(), a_name);
  std::vector<std::string> all = a;
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  ExpectNoOverlapAndNoDuplicates(all);
  EXPECT_FALSE(std::filesystem::exists(a_name + ".replaced"));
}

TEST_F(CompactorTest, OverlapWithATinyLateSegmentWaitsInsteadOfRewritingABigOne) {
  std::vector<std::string> big, tiny, tiny2;
  for (int i = 0; i < 1000; ++i) big.push_back(Rec(1000 + i, 0));
  tiny.push_back(Rec(1500, 7));
  AddSegment(big);
  AddSegment(tiny);
  MakeCompactor({.target_bytes = 1 << 20});
  EXPECT_TRUE(compactor_->PickCompaction().empty());
  // Two small overlapping segments of their own are merged.
  for (int i = 0; i < 50; ++i) tiny2.push_back(Rec(5000 + 2 * i, 0));
  AddSegment(tiny2);
  tiny2.clear();
  for (int i = 0; i < 50; ++i) tiny2.push_back(Rec(5001 + 2 * i, 0));
  AddSegment(tiny2);
  EXPECT_EQ(compactor_->PickCompaction().size(), 2u);
}

// OK Log's issue #132: a trickle of small segments. Size tiers keep the bytes compaction
// writes within a small multiple of the bytes ingested.
TEST_F(CompactorTest, SizeTiersBoundWriteAmplificationOfATrickle) {
  UseShm();
  const uint64_t target = 2 << 20;
  MakeCompactor({.target_bytes = target, .fanout = 8});
  uint64_t ingested = 0, n = 0, ms = 1000;
  std::vector<std::string> expected;
  std::mt19937_64 rng(3);
  for (int seg = 0; seg < 700; ++seg) {
    std::vector<std::string> recs;
    for (int i = 0; i < 40; ++i) recs.push_back(Rec(ms++, n++, rng() % 60));
    expected.insert(expected.end(), recs.begin(), recs.end());
    ingested += AddSegment(recs);
    CompactFully();
  }
  const uint64_t written = Metric("oklog_store_compaction_bytes_written_total");
  const double wa = static_cast<double>(written) / static_cast<double>(ingested);
  RecordProperty("write_amplification", std::to_string(wa));
  std::printf("write amplification %.2f (%llu written / %llu ingested), %zu segments\n", wa,
              static_cast<unsigned long long>(written), static_cast<unsigned long long>(ingested),
              store_->segment_count());
  EXPECT_LE(wa, 3.0) << "written " << written << " ingested " << ingested;
  EXPECT_GT(wa, 0.5);
  EXPECT_LE(store_->segment_count(), 30u);
  ExpectNoOverlapAndNoDuplicates(expected);
}

TEST_F(CompactorTest, ReadersSeeEveryRecordExactlyOnceWhileCompactionRuns) {
  for (uint64_t seed = 11; seed <= 13; ++seed) {
    std::filesystem::remove_all(dir());
    Reopen();
    std::mt19937_64 rng(seed);
    std::vector<std::string> distinct;
    for (auto& seg : RandomSegments(rng, 30, 4000, &distinct)) AddSegment(seg);
    MakeCompactor({.target_bytes = 16 << 10, .fanout = 2});
    std::atomic<bool> done{false};
    std::atomic<int> queries{0}, bad{0};
    std::thread reader([&] {
      while (!done || queries < 3) {
        auto got = ReadDistinct();
        if (got != distinct) ++bad;
        ++queries;
      }
    });
    std::thread writer([&] {
      CompactFully();
      done = true;
    });
    writer.join();
    reader.join();
    EXPECT_EQ(bad.load(), 0) << "of " << queries.load() << " queries";
    ExpectNoOverlapAndNoDuplicates(distinct);
  }
}

// A crash after every file operation of a compaction (the process dies: nothing after the Nth
// create, write, sync, rename, unlink or directory sync reaches the disk), then a power cut
// (what was not synced is lost) and a restart from disk: every record is still there, a reader
// sees each once, and the next compaction leaves no duplicate on disk.
void CrashAtEveryStep(CompactorTest* t, const std::vector<std::vector<std::string>>& segments,
                      const std::vector<std::string>& distinct, uint64_t target) {
  bool completed = false;
  int crashes = 0;
  for (int crash_at = 0; !completed && crash_at < 2000; ++crash_at) {
    SCOPED_TRACE("crash after file operation " + std::to_string(crash_at));
    t->env_.ClearFaults();
    std::filesystem::remove_all(t->dir());
    t->Reopen();
    for (const auto& s : segments) t->AddSegment(s);
    t->MakeCompactor({.target_bytes = target});
    t->env_.CrashAfter(crash_at);
    auto r = t->compactor_->Compact(t->store_->All());
    // A crash among the unlinks of the inputs (after the swap) is not the compaction's error.
    completed = r.ok() && !t->env_.crashed();
    if (!r.ok()) {
      EXPECT_TRUE(t->env_.crashed());
      EXPECT_EQ(r.status().code(), Code::kIOError) << r.status().ToString();
    }
    if (t->env_.crashed()) ++crashes;
    t->PowerLossAndRestart();  // only what is durable on disk survives
    EXPECT_EQ(t->store_->quarantined(), 0u);
    std::set<std::string> raw;
    for (const auto& rec : t->RawRecords()) raw.insert(rec);
    EXPECT_EQ(std::vector<std::string>(raw.begin(), raw.end()), distinct) << "records lost";
    EXPECT_EQ(t->ReadDistinct(), distinct);
    t->MakeCompactor({.target_bytes = target});
    t->CompactFully();
    t->ExpectNoOverlapAndNoDuplicates(distinct);
    for (const auto& e : std::filesystem::directory_iterator(t->dir()))
      EXPECT_EQ(e.path().extension(), ".seg") << e.path();
  }
  EXPECT_TRUE(completed);
  EXPECT_GT(crashes, 5);  // the crash really hit the compaction's steps
}

TEST_F(CompactorTest, CrashBetweenAnyTwoStepsLosesNothingAndLeavesNoDuplicate) {
  // Several outputs (small target) from overlapping inputs with duplicates.
  std::mt19937_64 rng(5);
  std::vector<std::string> distinct;
  auto segs = RandomSegments(rng, 4, 600, &distinct);
  CrashAtEveryStep(this, segs, distinct, 8 << 10);
}

TEST_F(CompactorTest, CrashWhileAnOutputReplacesAnInputOfItsNameLosesNothing) {
  std::vector<std::string> a, b;
  for (int i = 0; i < 300; ++i) a.push_back(Rec(1000 + i, 0));
  for (int i = 100; i < 200; ++i) b.push_back(Rec(1000 + i, 0));  // duplicates of a's
  for (int i = 100; i < 200; ++i) b.push_back(Rec(1000 + i, 1));
  std::set<std::string> u(a.begin(), a.end());
  u.insert(b.begin(), b.end());
  CrashAtEveryStep(this, {a, b}, std::vector<std::string>(u.begin(), u.end()), 1 << 20);
}

TEST_F(CompactorTest, StartAndStopRunTheCompactionOnItsOwnThread) {
  std::mt19937_64 rng(9);
  std::vector<std::string> distinct;
  for (auto& seg : RandomSegments(rng, 10, 1000, &distinct)) AddSegment(seg);
  MakeCompactor({.target_bytes = 1 << 20, .idle_interval = std::chrono::milliseconds(10)});
  compactor_->Start();
  ASSERT_TRUE(WaitFor(
      [&] {
        return Metric("oklog_store_compaction_runs_total{result=\"ok\"}") > 0 && compactor_->PickCompaction().empty();
      },
      std::chrono::seconds(20)));
  compactor_->Stop();
  auto raw = RawRecords();
  std::sort(raw.begin(), raw.end());
  EXPECT_EQ(raw, distinct);
}

// A bad block in an input (found by the merge itself: the bytes change behind the open reader)
// is stepped over: the compaction succeeds, its output holds every good record of every input
// and none of the bad block's, the block is counted once, nothing is quarantined, and the
// block's range stays a gap after the input is gone, across a restart too.
TEST_F(CompactorTest, ABadInputBlockIsSteppedOverAndEveryGoodRecordIsKept) {
  std::vector<std::string> a, b;
  for (int i = 0; i < 200; ++i) a.push_back(Rec(1000 + i, 0));
  for (int i = 0; i < 200; ++i) b.push_back(Rec(1000 + i, 1));
  AddSegment(a);
  AddSegment(b);
  std::shared_ptr<const SegmentReader> seg_b = store_->All()[1];
  ASSERT_GE(seg_b->blocks().size(), 3u);
  const BlockInfo b1 = seg_b->blocks()[1];
  std::string bad = seg_b->path();
  // Damage block 1's bytes behind the reader's back (same inode, so the open reader sees it).
  {
    int fd = ::open(bad.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const off_t at = static_cast<off_t>(b1.offset + b1.compressed_size / 2);
    char c;
    ASSERT_EQ(::pread(fd, &c, 1, at), 1);
    c = static_cast<char>(c ^ 0x55);
    ASSERT_EQ(::pwrite(fd, &c, 1, at), 1);
    ::close(fd);
  }
  std::vector<std::string> expected = a;
  for (const std::string& r : b) {
    const Ulid u = *Ulid::ParseCanonical(r.data());
    if (u < b1.first || u > b1.last) expected.push_back(r);
  }
  std::sort(expected.begin(), expected.end());
  seg_b.reset();
  MakeCompactor({});
  auto r = compactor_->Compact(store_->All());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->bad_blocks, 1u);
  EXPECT_EQ(r->records, expected.size());
  EXPECT_EQ(store_->quarantined(), 0u);
  EXPECT_EQ(store_->blocks_quarantined(), 1u);
  EXPECT_EQ(Metric("oklog_store_blocks_quarantined_total"), 1u);
  EXPECT_FALSE(std::filesystem::exists(dir() + "/quarantine/" + std::filesystem::path(bad).filename().string()));
  EXPECT_EQ(Metric("oklog_store_compaction_runs_total{result=\"ok\"}"), 1u);
  ExpectNoOverlapAndNoDuplicates(expected);
  auto gaps = store_->UnhealedGaps(Ulid(), Ulid::Max());
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].low, b1.first);
  EXPECT_EQ(gaps[0].high, b1.last);
  EXPECT_EQ(gaps[0].records, b1.records);
  Reopen();  // no file holds the bad block now: gaps.log alone remembers the range
  EXPECT_EQ(store_->blocks_quarantined(), 0u);
  EXPECT_EQ(store_->UnhealedGaps(Ulid(), Ulid::Max()).size(), 1u);
  EXPECT_EQ(RawRecords(), expected);
}

TEST_F(CompactorTest, RejectsBadOptions) {
  EXPECT_FALSE(Compactor::Create(store_.get(), {.fanout = 1}, metrics_.get()).ok());
  EXPECT_FALSE(Compactor::Create(store_.get(), {.target_bytes = 100}, metrics_.get()).ok());
}


// ---- range drops (copies beyond N, requested by the holdings exchange) ----

struct DropOutcome {
  int calls = 0;
  Status status;
};
RangeDrop MakeDrop(uint64_t low_ms, uint64_t high_ms, uint64_t max_records, DropOutcome* out,
                   std::function<bool()> still = nullptr) {
  RangeDrop d;
  d.low = Ulid::MinAt(low_ms);
  d.high = Ulid::MaxAt(high_ms);
  d.max_records = max_records;
  d.not_before = std::chrono::steady_clock::now();
  d.still_wanted = std::move(still);
  d.done = [out](const Status& s) {
    ++out->calls;
    out->status = s;
  };
  return d;
}

// Two overlapping segments hold ms 1000..1099 (3 records a ms, some twice); dropping ms
// 1020..1039 and 1060..1069 removes exactly those records, from both segments, in one rewrite;
// everything else stays, once; each drop is told OK and the counters say how many went.
TEST_F(CompactorTest, RangeDropsRemoveExactlyTheirRecordsFromEveryOverlappingSegment) {
  MakeCompactor({});
  std::vector<std::string> a, b, keep;
  for (uint64_t ms = 1000; ms < 1100; ++ms)
    for (uint64_t n = 0; n < 3; ++n) {
      (n == 1 ? b : a).push_back(Rec(ms, n));
      if (ms % 7 == 0) b.push_back(Rec(ms, n));  // in both segments
      const bool dropped = (ms >= 1020 && ms <= 1039) || (ms >= 1060 && ms <= 1069);
      if (!dropped) keep.push_back(Rec(ms, n));
    }
  AddSegment(a);
  AddSegment(b);
  std::sort(keep.begin(), keep.end());
  DropOutcome d1, d2;
  compactor_->RequestDrop(MakeDrop(1020, 1039, 60, &d1));
  compactor_->RequestDrop(MakeDrop(1060, 1069, 30, &d2));
  auto r = compactor_->RunDrops(/*force=*/true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 2u);
  EXPECT_EQ(d1.calls, 1);
  EXPECT_TRUE(d1.status.ok()) << d1.status.ToString();
  EXPECT_EQ(d2.calls, 1);
  EXPECT_TRUE(d2.status.ok());
  EXPECT_EQ(ReadDistinct(), keep);
  EXPECT_EQ(RawRecords(), keep);  // the duplicates went with the rewrite
  EXPECT_EQ(Metric("oklog_store_range_drops_total"), 2u);
  EXPECT_EQ(Metric("oklog_store_range_dropped_records_total"), 90u);
}

// A range holding more distinct records than its batches account for (a batch that arrived
// after the decision) is not made: its done() gets InvalidArgument and every record stays; a
// drop made in the same rewrite that was not at fault is made at the next round.
TEST_F(CompactorTest, ARangeHoldingMoreRecordsThanAccountedForIsCancelledAndKeepsEverything) {
  MakeCompactor({});
  std::vector<std::string> all, keep;
  for (uint64_t ms = 1000; ms < 1040; ++ms) {
    all.push_back(Rec(ms, 0));
    if (ms < 1030) keep.push_back(Rec(ms, 0));
  }
  AddSegment(all);
  DropOutcome over, fine;
  compactor_->RequestDrop(MakeDrop(1000, 1009, 9, &over));  // 10 there, 9 accounted for
  compactor_->RequestDrop(MakeDrop(1030, 1039, 10, &fine));
  auto r = compactor_->RunDrops(true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 0u);
  EXPECT_EQ(over.calls, 1);
  EXPECT_EQ(over.status.code(), Code::kInvalidArgument) << over.status.ToString();
  EXPECT_EQ(fine.calls, 0);  // queued again
  EXPECT_EQ(RawRecords(), all);
  r = compactor_->RunDrops(true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 1u);
  EXPECT_EQ(fine.calls, 1);
  EXPECT_TRUE(fine.status.ok());
  EXPECT_EQ(RawRecords(), keep);
}

// A drop whose still_wanted() says no (the other holders died meanwhile) is Cancelled and
// removes nothing; drops are gathered: none is made before the oldest due one has waited
// drop_gather, then all due ones at once; one not due yet waits.
TEST_F(CompactorTest, DropsAreGatheredAndOneNoLongerWantedIsCancelled) {
  CompactorOptions o;
  o.drop_gather = std::chrono::milliseconds(300);
  MakeCompactor(o);
  std::vector<std::string> all;
  for (uint64_t ms = 1000; ms < 1030; ++ms) all.push_back(Rec(ms, 0));
  AddSegment(all);
  DropOutcome unwanted, wanted, later;
  compactor_->RequestDrop(MakeDrop(1000, 1009, 10, &unwanted, [] { return false; }));
  compactor_->RequestDrop(MakeDrop(1010, 1019, 10, &wanted, [] { return true; }));
  RangeDrop future = MakeDrop(1020, 1029, 10, &later);
  future.not_before += std::chrono::hours(1);
  compactor_->RequestDrop(std::move(future));
  auto r = compactor_->RunDrops();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 0u);  // gathering
  EXPECT_EQ(wanted.calls + unwanted.calls, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  r = compactor_->RunDrops();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 1u);
  EXPECT_EQ(unwanted.calls, 1);
  EXPECT_EQ(unwanted.status.code(), Code::kCancelled);
  EXPECT_EQ(wanted.calls, 1);
  EXPECT_TRUE(wanted.status.ok());
  EXPECT_EQ(later.calls, 0);
  std::vector<std::string> left(all.begin(), all.begin() + 10);
  left.insert(left.end(), all.begin() + 20, all.end());
  EXPECT_EQ(RawRecords(), left);
}

}  // namespace
}  // namespace oklog
