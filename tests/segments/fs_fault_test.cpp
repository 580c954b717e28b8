// Disk faults and crashes under the storage engine, through FaultInjectionEnv over real files:
// a full disk (ENOSPC) or a failing one (EIO) while the ingest log appends and syncs, while a
// store segment is written, during compaction and while a replica is installed; and power cuts
// after synced and unsynced writes. Each fault must surface as an error Status, leave no torn
// or half-named file where readers look, lose nothing that was acknowledged, and stop mattering
// once it is cleared.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "common/fs/fault_injection_env.h"
#include "segments/compactor.h"
#include "segments/consumer.h"
#include "segments/ingest_log.h"
#include "segments/record_merge.h"
#include "segments/segment_image_util.h"
#include "segments/segment_rpc.h"
#include "segments/store_log.h"
#include "test_util.h"

namespace oklog {
namespace {

std::string Rec(uint64_t ms, uint64_t n = 0) {
  return Ulid::FromParts(ms, 0, n).ToString() + " t line " + std::to_string(ms) + "/" + std::to_string(n) + "\n";
}
std::string Recs(uint64_t from, uint64_t to) {
  std::string out;
  for (uint64_t i = from; i < to; ++i) out += Rec(1000 + i);
  return out;
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t Metric(Registry* m, const std::string& line_prefix) {
  std::string text = m->Render();
  auto p = text.find("\n" + line_prefix + " ");
  if (p == std::string::npos) return 0;
  return std::stoull(text.substr(p + line_prefix.size() + 2));
}

// Every record of every store segment, in order.
std::vector<std::string> StoredRecords(const StoreLog& store) {
  std::vector<std::string> out;
  std::string block;
  for (const auto& s : store.All())
    for (size_t i = 0; i < s->blocks().size(); ++i) {
      EXPECT_TRUE(s->ReadBlock(i, &block).ok());
      ParseStats ps;
      for (auto r : ParseRecords(block, &ps)) out.emplace_back(r);
      EXPECT_EQ(ps.invalid, 0u);
    }
  return out;
}

struct FaultCase {
  FsOp op;
  int error;
  Code code;
};
const FaultCase kWriteAndSyncFaults[] = {
    {FsOp::kWrite, ENOSPC, Code::kResourceExhausted},
    {FsOp::kWrite, EIO, Code::kIOError},
    {FsOp::kSync, EIO, Code::kIOError},
    {FsOp::kSync, ENOSPC, Code::kResourceExhausted},
};
std::string Describe(const FaultCase& f) {
  static const char* const kNames[] = {"create", "write", "sync", "rename", "remove", "truncate", "syncdir"};
  return std::string(kNames[static_cast<int>(f.op)]) + " fails with " + std::strerror(f.error);
}

// ---- (a) the ingest log: appends and group-commit syncs ----

class IngestFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void Open() {
    log_.reset();
    metrics_ = std::make_unique<Registry>();
    IngestLog::Options o;
    o.env = &env_;
    auto l = IngestLog::Open(tmp_.path(), o, metrics_.get());
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    log_ = std::move(l).value();
  }
  // Claims every flushed segment and returns their bytes, oldest first.
  std::string ClaimAll() {
    std::string out;
    for (const auto& p : log_->Claim(uint64_t{1} << 40)) out += ReadFile(p.path);
    return out;
  }
  FaultInjectionEnv env_;
  TempDir tmp_;
  std::unique_ptr<Registry> metrics_;
  std::unique_ptr<IngestLog> log_;
};

TEST_F(IngestFaultTest, FailedAppendOrSyncIsAnErrorKeepsWhatWasSyncedAndCutsTheTornRecord) {
  for (const FaultCase& f : kWriteAndSyncFaults) {
    SCOPED_TRACE(Describe(f));
    auto seg = log_->NewActive();
    ASSERT_TRUE(seg.ok());
    const std::string acked = Recs(0, 10);
    ASSERT_TRUE((*seg)->Append(acked.data(), acked.size()).ok());
    ASSERT_TRUE((*seg)->Sync().ok());  // acknowledged
    env_.Inject({.op = f.op, .error = f.error, .path_contains = ".active", .torn = true});
    const std::string more = Recs(10, 20);
    ASSERT_TRUE((*seg)->Append(more.data(), more.size()).ok());  // buffered
    Status s = (*seg)->Sync();
    EXPECT_EQ(s.code(), f.code) << s.ToString();
    EXPECT_EQ((*seg)->Append(more.data(), more.size()).code(), f.code);  // sticky
    // Retired: what reached the file whole stays (a sync failure keeps the written batch,
    // never acknowledged but whole records), a torn record does not.
    ASSERT_TRUE(log_->Flush(std::move(seg).value(), "error").ok());
    const std::string flushed = ClaimAll();
    EXPECT_EQ(flushed, f.op == FsOp::kWrite ? acked : acked + more);
    env_.ClearFaults();

    // Once the fault is gone the log works as before.
    auto next = log_->NewActive();
    ASSERT_TRUE(next.ok());
    const std::string later = Recs(20, 25);
    ASSERT_TRUE((*next)->Append(later.data(), later.size()).ok());
    ASSERT_TRUE((*next)->Sync().ok());
    ASSERT_TRUE(log_->Flush(std::move(next).value(), "close").ok());
    EXPECT_EQ(ClaimAll(), later);
  }
  EXPECT_EQ(log_->flushed_count(), 0u);
  for (const auto& n : Names(tmp_.path())) EXPECT_TRUE(n == "LOCK" || n.ends_with(".pending")) << n;
}

TEST_F(IngestFaultTest, FullDiskOnCreateIsAnErrorAndLeavesNothing) {
  env_.Inject({.op = FsOp::kCreate, .error = ENOSPC, .times = 1});
  EXPECT_EQ(log_->NewActive().status().code(), Code::kResourceExhausted);
  EXPECT_EQ(Names(tmp_.path()), std::vector<std::string>{"LOCK"});
  EXPECT_TRUE(log_->NewActive().ok());  // the fault lifted
}

TEST_F(IngestFaultTest, SyncedRecordsSurviveAPowerCutAndNothingTornRemains) {
  auto seg = log_->NewActive();
  ASSERT_TRUE(seg.ok());
  const std::string synced = Recs(0, 100);
  ASSERT_TRUE((*seg)->Append(synced.data(), synced.size()).ok());
  ASSERT_TRUE((*seg)->Sync().ok());
  const std::string unsynced = Recs(100, 150);
  ASSERT_TRUE((*seg)->Append(unsynced.data(), unsynced.size()).ok());
  ASSERT_TRUE((*seg)->WriteOut().ok());  // in the file, not synced
  auto other = log_->NewActive();        // a second file, never synced: its name is not durable
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Append(unsynced.data(), unsynced.size()).ok());
  ASSERT_TRUE((*other)->WriteOut().ok());
  seg.value().reset();  // the process dies: nothing flushed
  other.value().reset();
  log_.reset();
  ASSERT_TRUE(env_.SimulatePowerLoss().ok());

  Open();
  EXPECT_EQ(log_->flushed_count(), 1u);
  EXPECT_EQ(ClaimAll(), synced);
}

// The same through the consumer: a full store disk fails the batch back to the ingest log
// (counted), leaves no file in the store, and the batch is stored once the disk has room.
TEST_F(IngestFaultTest, ConsumerFailsTheBatchBackOnAFullStoreDiskAndStoresItOnceCleared) {
  TempDir store_dir;
  FaultInjectionEnv store_env;
  StoreLogOptions so;
  so.env = &store_env;
  auto store = StoreLog::Open(store_dir.path(), so, metrics_.get());
  ASSERT_TRUE(store.ok());
  auto seg = log_->NewActive();
  const std::string data = Recs(0, 50);
  ASSERT_TRUE((*seg)->Append(data.data(), data.size()).ok());
  ASSERT_TRUE(log_->Flush(std::move(seg).value(), "test").ok());

  store_env.Inject({.op = FsOp::kWrite, .error = ENOSPC});
  auto c = LocalConsumer::Start(log_.get(), store->get(), {.retry_backoff = std::chrono::milliseconds(20)},
                                metrics_.get());
  ASSERT_TRUE(WaitFor([&] { return Metric(metrics_.get(), "oklog_store_consume_failures_total") >= 2; },
                      std::chrono::seconds(10)));
  EXPECT_EQ((*store)->segment_count(), 0u);
  EXPECT_TRUE(Names(store_dir.path()).empty());
  EXPECT_EQ(log_->flushed_count() + log_->pending_count(), 1u);  // not committed

  store_env.ClearFaults();
  ASSERT_TRUE(WaitFor([&] { return log_->flushed_count() == 0 && log_->pending_count() == 0; },
                      std::chrono::seconds(10)));
  c->Stop();
  std::string stored;
  for (const auto& r : StoredRecords(**store)) stored += r;
  EXPECT_EQ(stored, data);
}

// ---- (b) store segment writes ----

class StoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    metrics_ = std::make_unique<Registry>();
    StoreLogOptions o;
    o.writer.block_target_bytes = 4096;
    o.env = &env_;
    auto s = StoreLog::Open(tmp_.path(), o, metrics_.get());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  // Writes records [from, to) as one segment; returns Finish's result.
  Result<std::string> Write(uint64_t from, uint64_t to) {
    auto w = store_->NewWriter();
    if (!w.ok()) return w.status();
    for (uint64_t i = from; i < to; ++i) OKLOG_RETURN_IF_ERROR((*w)->Append(Rec(1000 + i)));
    return (*w)->Finish();
  }
  std::vector<std::string> Expected(uint64_t from, uint64_t to) {
    std::vector<std::string> out;
    for (uint64_t i = from; i < to; ++i) out.push_back(Rec(1000 + i));
    return out;
  }
  FaultInjectionEnv env_;
  TempDir tmp_;
  std::unique_ptr<Registry> metrics_;
  std::unique_ptr<StoreLog> store_;
};

TEST_F(StoreFaultTest, FailedSegmentWriteIsAnErrorLeavesNoFileAndTheNextWriteWorks) {
  auto first = Write(0, 100);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(store_->Add(*first).ok());
  const std::vector<std::string> before = Names(tmp_.path());
  std::vector<FaultCase> cases(std::begin(kWriteAndSyncFaults), std::end(kWriteAndSyncFaults));
  cases.push_back({FsOp::kRename, EIO, Code::kIOError});
  cases.push_back({FsOp::kSyncDir, EIO, Code::kIOError});
  uint64_t next = 100;
  for (const FaultCase& f : cases) {
    SCOPED_TRACE(Describe(f));
    env_.Inject({.op = f.op, .error = f.error});
    auto r = Write(next, next + 3000);
    EXPECT_EQ(r.status().code(), f.code) << r.status().ToString();
    env_.ClearFaults();
    if (f.op == FsOp::kSyncDir) {
      // The segment is in place under its name, only its directory entry may not be durable:
      // Finish reports the error and the caller does not add it; a restart finds it whole.
      ASSERT_TRUE(env_.SyncDir(tmp_.path()).ok());
      Reopen();
      EXPECT_EQ(store_->quarantined(), 0u);
      EXPECT_EQ(StoredRecords(*store_).size(), next + 3000);
      next += 3000;
      continue;
    }
    EXPECT_EQ(Names(tmp_.path()), before) << "a temporary or partial segment is visible";
    EXPECT_EQ(store_->segment_count(), 1u);
  }
  // Cleared: writes work, and a restart finds exactly the acknowledged segments.
  auto ok = Write(next, next + 50);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ASSERT_TRUE(store_->Add(*ok).ok());
  Reopen();
  EXPECT_EQ(store_->quarantined(), 0u);
  EXPECT_EQ(StoredRecords(*store_), Expected(0, next + 50));
}

// A crash at every file operation of a segment write, then a power cut: the segments
// acknowledged before are intact, the new one is there exactly when Finish succeeded, and no
// temporary or torn file remains.
TEST_F(StoreFaultTest, PowerCutAtAnyPointOfASegmentWriteKeepsEveryAcknowledgedSegment) {
  bool completed = false;
  for (int crash_at = 0; !completed && crash_at < 100; ++crash_at) {
    SCOPED_TRACE("crash after file operation " + std::to_string(crash_at));
    store_.reset();
    std::filesystem::remove_all(tmp_.path());
    Reopen();
    for (uint64_t s = 0; s < 2; ++s) {
      auto p = Write(s * 100, s * 100 + 100);
      ASSERT_TRUE(p.ok());
      ASSERT_TRUE(store_->Add(*p).ok());
    }
    env_.CrashAfter(crash_at);
    auto r = Write(200, 2200);
    completed = r.ok() && !env_.crashed();
    store_.reset();
    ASSERT_TRUE(env_.SimulatePowerLoss().ok());
    Reopen();
    EXPECT_EQ(store_->quarantined(), 0u);
    EXPECT_EQ(StoredRecords(*store_), Expected(0, r.ok() ? 2200 : 200));
    for (const auto& n : Names(tmp_.path())) EXPECT_TRUE(n.ends_with(".seg")) << n;
  }
  EXPECT_TRUE(completed);
}

// ---- (c) compaction ----

TEST_F(StoreFaultTest, FailedCompactionIsAnErrorKeepsTheInputsAndSucceedsOnceCleared) {
  // Three overlapping segments: every record of 0..600 once, some twice.
  for (auto [from, to] : {std::pair<uint64_t, uint64_t>{0, 300}, {200, 500}, {400, 600}}) {
    auto p = Write(from, to);
    ASSERT_TRUE(p.ok());
    ASSERT_TRUE(store_->Add(*p).ok());
  }
  const std::vector<std::string> files = Names(tmp_.path());
  std::vector<FaultCase> cases(std::begin(kWriteAndSyncFaults), std::end(kWriteAndSyncFaults));
  cases.push_back({FsOp::kRename, ENOSPC, Code::kResourceExhausted});
  uint64_t errors = 0;
  for (const FaultCase& f : cases) {
    SCOPED_TRACE(Describe(f));
    auto c = Compactor::Create(store_.get(), {.target_bytes = 8 << 10}, metrics_.get());
    ASSERT_TRUE(c.ok());
    // The second output fails: the first is already in place and must be taken back.
    env_.Inject({.op = f.op, .error = f.error, .after = 1});
    auto r = (*c)->Compact(store_->All());
    env_.ClearFaults();
    EXPECT_EQ(r.status().code(), f.code) << r.status().ToString();
    EXPECT_EQ(Metric(metrics_.get(), "oklog_store_compaction_runs_total{result=\"error\"}"), ++errors);
    EXPECT_EQ(Names(tmp_.path()), files);
    EXPECT_EQ(store_->segment_count(), 3u);
  }
  std::set<std::string> distinct;
  for (const auto& r : StoredRecords(*store_)) distinct.insert(r);
  EXPECT_EQ(distinct.size(), 600u);
  auto c = Compactor::Create(store_.get(), {.target_bytes = 8 << 10}, metrics_.get());
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Compact(store_->All());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->outputs, 1u);
  Reopen();
  EXPECT_EQ(StoredRecords(*store_), Expected(0, 600));
}

// ---- (d) replica install ----

TEST_F(StoreFaultTest, FailedReplicaInstallIsAnErrorLeavesNoFileAndAReplayThenSucceeds) {
  std::vector<std::string> recs = Expected(0, 300);
  const SegmentImage image = testing_image::Encode(recs, {.block_target_bytes = 4096});
  std::vector<FaultCase> cases(std::begin(kWriteAndSyncFaults), std::end(kWriteAndSyncFaults));
  cases.push_back({FsOp::kRename, EIO, Code::kIOError});
  cases.push_back({FsOp::kCreate, ENOSPC, Code::kResourceExhausted});
  for (const FaultCase& f : cases) {
    SCOPED_TRACE(Describe(f));
    env_.Inject({.op = f.op, .error = f.error});
    auto r = store_->InstallReplicaFile(image.bytes);
    env_.ClearFaults();
    EXPECT_EQ(r.status().code(), f.code) << r.status().ToString();
    EXPECT_TRUE(Names(tmp_.path()).empty());
    EXPECT_EQ(store_->segment_count(), 0u);
  }
  auto r = store_->InstallReplicaFile(image.bytes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 300u);
  Reopen();
  EXPECT_EQ(StoredRecords(*store_), recs);
}

}  // namespace
}  // namespace oklog
