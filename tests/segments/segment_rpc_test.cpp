// The store/ingest data plane over real loopback RPC: segment.next/read/commit/failed against an
// IngestLog, segment.replicate and segment.replicate_file into a StoreLog, and WriteReplica /
// InstallReplica on a range already stored.
#include "common/uv/work_pool.h"
#include "segments/segment_messages.h"
#include "segments/segment_rpc.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <optional>
#include <thread>

#include "common/ulid.h"
#include "rpc/rpc_client.h"
#include "segments/record_merge.h"
#include "common/fs/fault_injection_env.h"
#include "segments/segment_image_util.h"
#include "test_util.h"

namespace oklog {
namespace {

std::string Records(uint64_t ms, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    Ulid u = Ulid::FromParts(ms + static_cast<uint64_t>(i), 0, static_cast<uint64_t>(i));
    out += u.ToString() + " t line " + std::to_string(i) + "\n";
  }
  return out;
}

class SegmentRpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    IngestLog::Options io;
    io.pending_timeout = std::chrono::milliseconds(200);
    auto il = IngestLog::Open(dir_.path() + "/ingest", io, &metrics_);
    ASSERT_TRUE(il.ok()) << il.status().ToString();
    ingest_ = std::move(il).value();
    StoreLogOptions so;
    so.env = &store_env_;  // passes everything through until a test injects a fault
    auto sl = StoreLog::Open(dir_.path() + "/store", so, &metrics_);
    ASSERT_TRUE(sl.ok());
    store_ = std::move(sl).value();
    server_ = rpc::RpcServer::Create(&loop_, {"t", "s"}, &metrics_);
    ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
    addr_ = "127.0.0.1:" + std::to_string(server_->port());
    auto disk = WorkPool::Create(&loop_, 2, "segment-rpc");
    ASSERT_TRUE(disk.ok()) << disk.status().ToString();
    disk_ = std::move(disk).value();
    ingest_rpc_ = IngestRpc::Create(&loop_, ingest_.get(), server_.get(), disk_.get(), std::chrono::milliseconds(200),
                                    &metrics_);
    ServeReplicas(store_.get(), server_.get(), disk_.get(), &metrics_);
    client_ = rpc::RpcClient::Create(&loop_, {"t", "c"}, &metrics_);
  }
  void TearDown() override {
    ingest_rpc_->Close();
    client_->Close();
    server_->Close();
    disk_->Close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  Result<std::string> Call(const std::string& method, std::string body) {
    std::optional<Result<std::string>> out;
    client_->Call(addr_, method, std::move(body), rpc::Duration(5000), [&](Result<std::string> r) { out = r; });
    while (!out) uv_run(&loop_, UV_RUN_ONCE);
    return std::move(*out);
  }

  void Flushed(const std::string& data) {
    auto seg = ingest_->NewActive();
    ASSERT_TRUE(seg.ok());
    ASSERT_TRUE((*seg)->Append(data.data(), data.size()).ok());
    ASSERT_TRUE(ingest_->Flush(std::move(*seg), "test").ok());
  }

  // segment.next with the claims decoded.
  std::vector<ClaimedSegment> Next(uint64_t max_bytes) {
    Result<std::string> r = Call(kSegmentNext, EncodeSegmentNext(max_bytes));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    Result<std::vector<ClaimedSegment>> c = DecodeClaimedSegments(*r);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? *c : std::vector<ClaimedSegment>{};
  }
  // The records a replica call stored, or -1 on an error.
  int64_t Stored(const char* method, const std::string& body) {
    Result<std::string> r = Call(method, body);
    if (!r.ok()) return -1;
    Result<uint64_t> n = DecodeStoredRecords(*r);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? static_cast<int64_t>(*n) : -1;
  }

  // One rendered series ("name{labels}"), or -1.
  double Metric(const std::string& series) {
    return SeriesValue(metrics_.Render(), series);
  }
  uint64_t CounterValue(const std::string& name) { return metrics_.NewCounter(name, "")->Value(); }
  uint64_t StoredRecords() {
    uint64_t n = 0;
    for (const auto& seg : store_->All()) n += seg->records();
    return n;
  }
  // Names in the store directory other than quarantine/ and trash/.
  std::vector<std::string> StoreFiles() {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(store_->dir())) {
      const std::string name = e.path().filename().string();
      // holdings.log: the store's list of replicated batches (segments/holdings.h), not a leftover.
      if (name != "quarantine" && name != "trash" && name != "holdings.log") out.push_back(name);
    }
    return out;
  }

  FaultInjectionEnv store_env_;
  TempDir dir_;
  Registry metrics_;
  uv_loop_t loop_;
  std::unique_ptr<IngestLog> ingest_;
  std::unique_ptr<StoreLog> store_;
  std::unique_ptr<rpc::RpcServer> server_;
  std::unique_ptr<WorkPool> disk_;  // the segment RPC's file work; closed in TearDown
  std::unique_ptr<IngestRpc> ingest_rpc_;
  std::unique_ptr<rpc::RpcClient> client_;
  std::string addr_;
};

TEST_F(SegmentRpcTest, ClaimReadCommitOverRpc) {
  EXPECT_TRUE(Next(1000000).empty());
  const std::string data = Records(1700000000000, 10);
  Flushed(data);
  std::vector<ClaimedSegment> next = Next(1000000);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].bytes, data.size());
  const std::string id = next[0].id;
  EXPECT_EQ(ingest_->pending_count(), 1u);
  EXPECT_EQ(*Call(kSegmentRead, EncodeSegmentId(id)), data);
  EXPECT_TRUE(Call(kSegmentCommit, EncodeSegmentIds({id})).ok());
  EXPECT_EQ(ingest_->pending_count(), 0u);
  EXPECT_EQ(ingest_->flushed_count(), 0u);
  EXPECT_EQ(Call(kSegmentCommit, EncodeSegmentIds({id})).status().code(), Code::kNotFound);
}

TEST_F(SegmentRpcTest, FailedAndTimedOutClaimsGoBackToFlushed) {
  Flushed(Records(1700000000000, 3));
  std::vector<ClaimedSegment> claimed = Next(1000);
  ASSERT_EQ(claimed.size(), 1u);
  std::string id = claimed[0].id;
  EXPECT_TRUE(Call(kSegmentFailed, EncodeSegmentIds({id})).ok());
  EXPECT_EQ(ingest_->flushed_count(), 1u);
  ASSERT_FALSE(Next(1000).empty());
  EXPECT_EQ(ingest_->pending_count(), 1u);
  // Nobody commits: the pending timeout (200 ms) returns it.
  ASSERT_TRUE(WaitFor([&] {
    uv_run(&loop_, UV_RUN_NOWAIT);
    return ingest_->flushed_count() == 1u;
  }, std::chrono::seconds(5)));
}

TEST_F(SegmentRpcTest, BadInputIsInvalidArgumentAndCounted) {
  EXPECT_EQ(Call(kSegmentNext, "lots").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Call(kSegmentNext, EncodeSegmentNext(0)).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Call(kSegmentRead, EncodeSegmentId("../../etc/passwd")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Call(kSegmentRead, "01HZZZZZZZZZZZZZZZZZZZZZZZ").status().code(), Code::kInvalidArgument);  // old form
  EXPECT_EQ(Call(kSegmentCommit, EncodeSegmentIds({"x"})).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Call(kSegmentFailed, "01HZZZZZZZZZZZZZZZZZZZZZZZ\n").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Call(kSegmentReplicate, "not a record\n").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Metric("oklog_segment_rpc_bad_requests_total{method=\"segment.next\"}"), 2);
  EXPECT_EQ(Metric("oklog_segment_rpc_bad_requests_total{method=\"segment.read\"}"), 2);
  EXPECT_EQ(Metric("oklog_segment_rpc_bad_requests_total{method=\"segment.commit\"}"), 1);
  EXPECT_EQ(Metric("oklog_segment_rpc_bad_requests_total{method=\"segment.failed\"}"), 1);
}

TEST_F(SegmentRpcTest, ReplicaIsStoredAndAReplayIsHarmless) {
  const std::string data = Records(1700000000000, 100);
  EXPECT_EQ(Stored(kSegmentReplicate, data), 100);
  EXPECT_EQ(store_->segment_count(), 1u);
  // The same range again, plus records inside it that were not there: all end up stored.
  std::string more = Records(1700000000000, 100);
  EXPECT_EQ(Stored(kSegmentReplicate, more), 100);
  uint64_t records = 0;
  for (const auto& s : store_->All()) records += s->records();
  EXPECT_GE(records, 100u);
}

std::vector<std::string> RecordList(uint64_t ms, int n) {
  std::vector<std::string> out;
  const std::string all = Records(ms, n);
  for (size_t pos = 0; pos < all.size();) {
    const size_t nl = all.find('\n', pos);
    out.push_back(all.substr(pos, nl + 1 - pos));
    pos = nl + 1;
  }
  return out;
}

TEST_F(SegmentRpcTest, ReplicaFileIsInstalledAsIsAndQueryable) {
  const std::vector<std::string> recs = RecordList(1700000000000, 300);
  const SegmentImage image = testing_image::Encode(recs, {.block_target_bytes = 4096});
  EXPECT_EQ(Stored(kSegmentReplicateFile, image.bytes), 300);
  ASSERT_EQ(store_->segment_count(), 1u);
  const auto seg = store_->All().front();
  EXPECT_EQ(seg->path(), store_->dir() + "/" + image.name.FileName());
  EXPECT_EQ(ReadFile(seg->path()), image.bytes);
  EXPECT_TRUE(seg->Verify().ok());
  EXPECT_EQ(StoreFiles().size(), 1u);  // no temporary left behind
  EXPECT_EQ(CounterValue("oklog_store_replicated_files_total"), 1u);
  EXPECT_EQ(CounterValue("oklog_store_replicated_records_total"), 300u);
  EXPECT_EQ(CounterValue("oklog_store_replica_files_rejected_total"), 0u);
}

TEST_F(SegmentRpcTest, ReplicaThatHitsAFullOrFailingDiskIsAnErrorCountedAndLeavesNoFile) {
  const SegmentImage image = testing_image::Encode(RecordList(1700000000000, 300), {.block_target_bytes = 4096});
  const std::string records = Records(1800000000000, 20);
  uint64_t errors = 0;
  for (auto [op, err] : {std::pair{FsOp::kWrite, ENOSPC}, {FsOp::kSync, EIO}, {FsOp::kRename, EIO}}) {
    store_env_.Inject({.op = op, .error = err});
    EXPECT_FALSE(Call(kSegmentReplicateFile, image.bytes).ok());
    EXPECT_FALSE(Call(kSegmentReplicate, records).ok());
    store_env_.ClearFaults();
    errors += 2;
    EXPECT_EQ(CounterValue("oklog_store_replica_write_errors_total"), errors);
    EXPECT_EQ(CounterValue("oklog_store_replica_files_rejected_total"), 0u);  // the bytes were fine
    EXPECT_TRUE(StoreFiles().empty());
    EXPECT_EQ(store_->segment_count(), 0u);
  }
  EXPECT_EQ(Stored(kSegmentReplicateFile, image.bytes), 300);  // the sender's retry
  EXPECT_EQ(Stored(kSegmentReplicate, records), 20);
  EXPECT_EQ(StoredRecords(), 320u);
  EXPECT_EQ(StoreFiles().size(), 2u);
}

// With a disk pool, installs run on it (not in libuv's shared pool): while its one thread is
// busy, a replica waits. Once the pool is closed a replica is Unavailable: nothing stored, no
// success reported, and not counted as a disk error.
TEST_F(SegmentRpcTest, ReplicasInstallOnTheGivenDiskPoolAndAClosedPoolStoresNothing) {
  auto pool = WorkPool::Create(&loop_, 1, "store-disk");
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  ServeReplicas(store_.get(), server_.get(), pool->get(), &metrics_);
  const SegmentImage image = testing_image::Encode(RecordList(1700000000000, 300), {.block_target_bytes = 4096});
  std::atomic<bool> release{false};
  ASSERT_TRUE((*pool)->Submit(
      [&] {
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      },
      [](Status) {}));
  std::optional<Result<std::string>> out;
  client_->Call(addr_, kSegmentReplicateFile, image.bytes, rpc::Duration(5000),
                [&](Result<std::string> r) { out = r; });
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until) {
    uv_run(&loop_, UV_RUN_NOWAIT);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_FALSE(out.has_value()) << "the install did not wait for the pool's thread";
  EXPECT_EQ(store_->segment_count(), 0u);
  release = true;
  while (!out) uv_run(&loop_, UV_RUN_ONCE);
  ASSERT_TRUE(out->ok()) << out->status().ToString();
  Result<uint64_t> n = DecodeStoredRecords(out->value());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 300u);
  EXPECT_EQ(store_->segment_count(), 1u);

  (*pool)->Close();
  Result<std::string> r = Call(kSegmentReplicate, Records(1800000000000, 20));
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_EQ(store_->segment_count(), 1u);
  EXPECT_EQ(StoreFiles().size(), 1u);
  EXPECT_EQ(CounterValue("oklog_store_replica_write_errors_total"), 0u);
}

TEST_F(SegmentRpcTest, CorruptTruncatedOrMisorderedFilesAreRejectedCountedAndNotInstalled) {
  const SegmentImage image = testing_image::Encode(RecordList(1700000000000, 300), {.block_target_bytes = 4096});
  auto info = CheckSegmentImage(image.bytes);
  ASSERT_TRUE(info.ok());
  ASSERT_GE(info->blocks.size(), 2u);
  std::vector<size_t> order(info->blocks.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = order.size() - 1 - i;
  std::string flipped = image.bytes;
  flipped[flipped.size() / 3] ^= 0x10;
  const std::vector<std::string> bad = {
      "",
      "not a segment file\n",
      image.bytes.substr(0, image.bytes.size() - 1),
      image.bytes.substr(0, image.bytes.size() / 2),
      image.bytes.substr(1),
      flipped,
      testing_image::Reassemble(image.bytes, *info, order),
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    Result<std::string> r = Call(kSegmentReplicateFile, bad[i]);
    EXPECT_EQ(r.status().code(), Code::kCorruption) << "input " << i;
    EXPECT_NE(r.status().message().find("rejected"), std::string::npos) << r.status().ToString();
  }
  EXPECT_EQ(CounterValue("oklog_store_replica_files_rejected_total"), bad.size());
  EXPECT_EQ(store_->segment_count(), 0u);
  EXPECT_TRUE(StoreFiles().empty());
  // The server keeps serving: the good file still goes in.
  EXPECT_EQ(Stored(kSegmentReplicateFile, image.bytes), 300);
  EXPECT_EQ(store_->segment_count(), 1u);
}

TEST_F(SegmentRpcTest, ReplayedFileIsStoredOnce) {
  const SegmentImage image = testing_image::Encode(RecordList(1700000000000, 100));
  EXPECT_EQ(Stored(kSegmentReplicateFile, image.bytes), 100);
  EXPECT_EQ(Stored(kSegmentReplicateFile, image.bytes), 100);
  EXPECT_EQ(store_->segment_count(), 1u);
  EXPECT_EQ(StoredRecords(), 100u);
}

TEST_F(SegmentRpcTest, FileWhoseNameIsTakenByOtherRecordsIsStoredAroundIt) {
  // Stored first: the range's two ends only. Then the full range arrives as a file of the same
  // name: its records are decoded and written in parts, none lost.
  const std::vector<std::string> recs = RecordList(1700000000000, 100);
  const SegmentImage ends = testing_image::Encode({recs.front(), recs.back()});
  EXPECT_EQ(Stored(kSegmentReplicateFile, ends.bytes), 2);
  const SegmentImage full = testing_image::Encode(recs, {.block_target_bytes = 4096});
  ASSERT_EQ(full.name.FileName(), ends.name.FileName());
  EXPECT_EQ(Stored(kSegmentReplicateFile, full.bytes), 100);
  std::string all, block;
  std::vector<std::string_view> seen;
  for (const auto& seg : store_->All())
    for (size_t b = 0; b < seg->blocks().size(); ++b) {
      ASSERT_TRUE(seg->ReadBlock(b, &block).ok());
      all += block;
    }
  ParseStats ps;
  std::vector<std::string_view> views = ParseRecords(all, &ps);
  SortRecords(&views);
  views.erase(std::unique(views.begin(), views.end()), views.end());
  ASSERT_EQ(views.size(), recs.size());
  for (size_t i = 0; i < recs.size(); ++i) EXPECT_EQ(views[i], recs[i]);
}

TEST_F(SegmentRpcTest, LocalInstallOfAnEncodedBatchFallsBackToItsRecords) {
  const std::vector<std::string> recs = RecordList(1700000000000, 50);
  std::vector<std::string_view> views(recs.begin(), recs.end());
  const SegmentImage image = testing_image::Encode(recs);
  EXPECT_EQ(*store_->InstallReplica(image, views), 50u);
  EXPECT_EQ(*store_->InstallReplica(image, views), 50u);  // the same file: nothing new
  EXPECT_EQ(store_->segment_count(), 1u);
  // Another file under that name: the records are written around it.
  const std::vector<std::string_view> ends = {views.front(), views.back()};
  const SegmentImage small = testing_image::Encode({recs.front(), recs.back()});
  EXPECT_EQ(*store_->InstallReplica(small, ends), 2u);
  EXPECT_GE(StoredRecords(), 50u);
}

}  // namespace
}  // namespace oklog
