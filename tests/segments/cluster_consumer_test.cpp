// ClusterConsumer over real loopback RPC inside one process: an ingest node (IngestLog +
// IngestRpc), a remote store (StoreLog + ServeReplicas) and the consuming store itself, all on
// one loop thread; the consumer's own threads reach the loop through a real RpcBridge.
#include "common/uv/work_pool.h"
#include "segments/cluster_consumer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "common/ulid.h"
#include "loop_util.h"
#include "rpc/rpc_bridge.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"
#include "segments/record_merge.h"
#include "segments/segment_rpc.h"
#include "test_util.h"

namespace oklog {
namespace {

std::string Records(uint64_t ms, int first, int n) {
  std::string out;
  for (int i = first; i < first + n; ++i) {
    Ulid u = Ulid::FromParts(ms + static_cast<uint64_t>(i), 0, static_cast<uint64_t>(i));
    out += u.ToString() + " t line " + std::to_string(i) + "\n";
  }
  return out;
}

// Every distinct record a store holds, in ULID order, with how many copies it holds in all.
struct Held {
  std::vector<std::string> distinct;
  uint64_t copies = 0;
};
Held Read(StoreLog* store) {
  std::vector<std::string> buffers;
  std::string block;
  Held h;
  for (const auto& s : store->Select(Ulid(), Ulid::Max())) {
    std::string& all = buffers.emplace_back();
    for (size_t i = 0; i < s->blocks().size(); ++i) {
      EXPECT_TRUE(s->ReadBlock(i, &block).ok());
      all += block;
    }
    h.copies += s->records();
  }
  MergedRecords m = MergeBuffers(std::vector<std::string_view>(buffers.begin(), buffers.end()));
  h.distinct.assign(m.records.begin(), m.records.end());
  return h;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    out.push_back(text.substr(pos, nl + 1 - pos));
    pos = nl + 1;
  }
  return out;
}

class ClusterConsumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    IngestLog::Options io;
    io.pending_timeout = std::chrono::milliseconds(300);
    auto il = IngestLog::Open(dir_.path() + "/ingest", io, &metrics_);
    ASSERT_TRUE(il.ok()) << il.status().ToString();
    ingest_ = std::move(il).value();
    for (auto* s : {&local_, &remote_}) {
      auto sl = StoreLog::Open(dir_.path() + (s == &local_ ? "/local" : "/remote"), StoreLogOptions{}, &metrics_);
      ASSERT_TRUE(sl.ok()) << sl.status().ToString();
      *s = std::move(sl).value();
    }
    uv_loop_t* loop = loop_.loop();
    ingest_server_ = rpc::RpcServer::Create(loop, {"t", "ingest"}, &metrics_);
    ASSERT_TRUE(ingest_server_->Listen("127.0.0.1:0").ok());
    ingest_addr_ = "127.0.0.1:" + std::to_string(ingest_server_->port());
    auto disk = WorkPool::Create(loop, 2, "segment-rpc");
    ASSERT_TRUE(disk.ok()) << disk.status().ToString();
    disk_ = std::move(disk).value();
    ingest_rpc_ = IngestRpc::Create(loop, ingest_.get(), ingest_server_.get(), disk_.get(),
                                    std::chrono::milliseconds(300), &metrics_);
    remote_server_ = rpc::RpcServer::Create(loop, {"t", "remote"}, &metrics_);
    ASSERT_TRUE(remote_server_->Listen("127.0.0.1:0").ok());
    remote_addr_ = "127.0.0.1:" + std::to_string(remote_server_->port());
    ServeReplicas(remote_.get(), remote_server_.get(), disk_.get(), &metrics_);
    client_ = rpc::RpcClient::Create(loop, {"t", "local"}, &metrics_);
    auto b = rpc::RpcBridge::Create(loop, client_.get());
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    bridge_ = std::move(b).value();
    loop_.Start();
  }

  void TearDown() override {
    if (consumer_) consumer_->Stop();
    loop_.Run([&] {
      bridge_->Close();
      client_->Close();
      return 0;
    });
    if (consumer_) consumer_->Join();
    loop_.Stop([&] {
      ingest_rpc_->Close();
      ingest_server_->Close();
      remote_server_->Close();
      disk_->Close();
    });
  }

  void Flushed(const std::string& data) {
    auto seg = ingest_->NewActive();
    ASSERT_TRUE(seg.ok());
    ASSERT_TRUE((*seg)->Append(data.data(), data.size()).ok());
    ASSERT_TRUE(ingest_->Flush(std::move(*seg), "test").ok());
  }

  void StartConsumer(std::string remote_addr, size_t replication_factor = 2, uint64_t bucket_ms = 60000) {
    ClusterConsumerOptions o;
    o.replication_factor = replication_factor;
    o.bucket_ms = bucket_ms;
    o.idle_poll = std::chrono::milliseconds(20);
    o.rpc_timeout = std::chrono::milliseconds(3000);
    std::string ingest = ingest_addr_;
    consumer_ = ClusterConsumer::Start(
        bridge_.get(),
        [ingest, remote_addr] {
          ClusterPeers p;
          p.ingest = {ingest};
          p.store = {{"local", "", true}, {"remote", remote_addr, false}};
          return p;
        },
        local_.get(), o, &metrics_);
  }

  bool WaitFor(const std::function<bool()>& pred, int ms) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }
  double Metric(const std::string& series) {
    return SeriesValue(loop_.Run([&] { return metrics_.Render(); }), series);
  }
  size_t Waiting() {
    return loop_.Run([&] { return ingest_->flushed_count() + ingest_->pending_count(); });
  }

  Registry metrics_;
  TempDir dir_;
  testing::LoopThread loop_;
  std::unique_ptr<IngestLog> ingest_;
  std::unique_ptr<StoreLog> local_, remote_;
  std::unique_ptr<rpc::RpcServer> ingest_server_, remote_server_;
  std::unique_ptr<WorkPool> disk_;  // the segment RPC's file work; closed in TearDown
  std::unique_ptr<IngestRpc> ingest_rpc_;
  std::unique_ptr<rpc::RpcClient> client_;
  std::unique_ptr<rpc::RpcBridge> bridge_;
  std::unique_ptr<ClusterConsumer> consumer_;
  std::string ingest_addr_, remote_addr_;
};

TEST_F(ClusterConsumerTest, EveryRecordEndsOnBothStoresOnceAndTheBatchIsCommitted) {
  // Three segments; the second repeats records of the first and the third (a resent batch).
  Flushed(Records(1700000000000, 0, 200));
  Flushed(Records(1700000000000, 150, 100));
  Flushed(Records(1700000000000, 250, 150));
  StartConsumer(remote_addr_);
  ASSERT_TRUE(WaitFor([&] { return Waiting() == 0; }, 10000)) << "flushed/pending left: " << Waiting();
  const std::vector<std::string> want = Lines(Records(1700000000000, 0, 400));
  for (StoreLog* s : {local_.get(), remote_.get()}) {
    Held h = Read(s);
    EXPECT_EQ(h.distinct, want);
    EXPECT_EQ(h.copies, want.size()) << "a duplicate stored";
  }
  EXPECT_EQ(Metric("oklog_store_written_records_total"), 400);
  EXPECT_EQ(Metric("oklog_store_duplicate_records_total"), 50);
  EXPECT_EQ(Metric("oklog_store_consume_failures_total"), 0);
}

// A batch never crosses a placement bucket boundary (segments/holdings.h): 400 records over
// 400 ms with 100 ms buckets are replicated as four batches, one per bucket, on both stores.
TEST_F(ClusterConsumerTest, BatchesAreCutAtPlacementBucketBoundaries) {
  Flushed(Records(1700000000000, 0, 400));
  StartConsumer(remote_addr_, 2, /*bucket_ms=*/100);
  ASSERT_TRUE(WaitFor([&] { return Waiting() == 0; }, 10000)) << "flushed/pending left: " << Waiting();
  for (StoreLog* s : {local_.get(), remote_.get()}) {
    EXPECT_EQ(Read(s).distinct, Lines(Records(1700000000000, 0, 400)));
    const BatchClaims held = s->holdings()->Snapshot();
    ASSERT_EQ(held.size(), 4u);
    for (size_t i = 0; i < held.size(); ++i) {
      EXPECT_EQ(held[i].first.low.unix_ms(), 1700000000000 + 100 * i);
      EXPECT_EQ(held[i].first.high.unix_ms(), 1700000000000 + 100 * i + 99);
      EXPECT_EQ(held[i].second, 100u);
    }
  }
}

TEST_F(ClusterConsumerTest, UnreachableReplicaFailsTheBatchBackAndNothingIsCommitted) {
  Flushed(Records(1700000000000, 0, 100));
  // A store address nothing listens on (bound, then closed).
  std::unique_ptr<rpc::RpcServer> gone;
  std::string gone_addr = loop_.Run([&] {
    gone = rpc::RpcServer::Create(loop_.loop(), {"t", "gone"}, &metrics_);
    EXPECT_TRUE(gone->Listen("127.0.0.1:0").ok());
    std::string a = "127.0.0.1:" + std::to_string(gone->port());
    gone->Close();
    return a;
  });
  StartConsumer(gone_addr);
  ASSERT_TRUE(WaitFor([&] { return Metric("oklog_store_consume_failures_total") >= 1; }, 10000));
  consumer_->Stop();
  // The data is still on the ingester (flushed again, or claimed until the pending timeout).
  EXPECT_EQ(Waiting(), 1u);
  EXPECT_GE(Metric("oklog_ingest_segments_claimed_total"), 1);
  EXPECT_TRUE(Read(remote_.get()).distinct.empty());
  ASSERT_TRUE(WaitFor([&] { return loop_.Run([&] { return gone->done(); }); }, 3000));
}

TEST_F(ClusterConsumerTest, WithFewerStoresThanTheReplicationFactorNothingIsClaimed) {
  Flushed(Records(1700000000000, 0, 10));
  StartConsumer(remote_addr_, 3);  // two stores live
  ASSERT_TRUE(WaitFor([&] { return Metric("oklog_store_replication_waiting") == 1; }, 5000));
  EXPECT_EQ(loop_.Run([&] { return ingest_->flushed_count(); }), 1u);
  EXPECT_EQ(Metric("oklog_ingest_segments_claimed_total"), 0);
}

}  // namespace
}  // namespace oklog
