// The store/ingest data plane over real loopback RPC: segment.next/read/commit/failed against an
// IngestLog, segment.replicate into a StoreLog, and WriteReplica on a range already stored.
#include "segments/segment_rpc.h"

#include <gtest/gtest.h>

#include <functional>
#include <optional>

#include "common/ulid.h"
#include "gossip/rpc_client.h"
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
    auto sl = StoreLog::Open(dir_.path() + "/store", {}, &metrics_);
    ASSERT_TRUE(sl.ok());
    store_ = std::move(sl).value();
    server_ = gossip::RpcServer::Create(&loop_, {"t", "s"}, &metrics_);
    ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
    addr_ = "127.0.0.1:" + std::to_string(server_->port());
    ingest_rpc_ = IngestRpc::Create(&loop_, ingest_.get(), server_.get(), std::chrono::milliseconds(200), &metrics_);
    ServeReplicas(&loop_, store_.get(), server_.get(), &metrics_);
    client_ = gossip::RpcClient::Create(&loop_, {"t", "c"}, &metrics_);
  }
  void TearDown() override {
    ingest_rpc_->Close();
    client_->Close();
    server_->Close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  Result<std::string> Call(const std::string& method, std::string body) {
    std::optional<Result<std::string>> out;
    client_->Call(addr_, method, std::move(body), gossip::Duration(5000), [&](Result<std::string> r) { out = r; });
    while (!out) uv_run(&loop_, UV_RUN_ONCE);
    return std::move(*out);
  }

  void Flushed(const std::string& data) {
    auto seg = ingest_->NewActive();
    ASSERT_TRUE(seg.ok());
    ASSERT_TRUE((*seg)->Append(data.data(), data.size()).ok());
    ASSERT_TRUE(ingest_->Flush(std::move(*seg), "test").ok());
  }

  TempDir dir_;
  Registry metrics_;
  uv_loop_t loop_;
  std::unique_ptr<IngestLog> ingest_;
  std::unique_ptr<StoreLog> store_;
  std::unique_ptr<gossip::RpcServer> server_;
  std::unique_ptr<IngestRpc> ingest_rpc_;
  std::unique_ptr<gossip::RpcClient> client_;
  std::string addr_;
};

TEST_F(SegmentRpcTest, ClaimReadCommitOverRpc) {
  EXPECT_EQ(*Call(kSegmentNext, "1000000"), "");
  const std::string data = Records(1700000000000, 10);
  Flushed(data);
  Result<std::string> next = Call(kSegmentNext, "1000000");
  ASSERT_TRUE(next.ok());
  ASSERT_EQ(next->size(), 26 + 1 + std::to_string(data.size()).size() + 1);
  const std::string id = next->substr(0, 26);
  EXPECT_EQ(ingest_->pending_count(), 1u);
  EXPECT_EQ(*Call(kSegmentRead, id), data);
  EXPECT_TRUE(Call(kSegmentCommit, id + "\n").ok());
  EXPECT_EQ(ingest_->pending_count(), 0u);
  EXPECT_EQ(ingest_->flushed_count(), 0u);
  EXPECT_EQ(Call(kSegmentCommit, id + "\n").status().code(), Code::kNotFound);
}

TEST_F(SegmentRpcTest, FailedAndTimedOutClaimsGoBackToFlushed) {
  Flushed(Records(1700000000000, 3));
  std::string id = Call(kSegmentNext, "1000").value().substr(0, 26);
  EXPECT_TRUE(Call(kSegmentFailed, id + "\n").ok());
  EXPECT_EQ(ingest_->flushed_count(), 1u);
  ASSERT_FALSE(Call(kSegmentNext, "1000")->empty());
  EXPECT_EQ(ingest_->pending_count(), 1u);
  // Nobody commits: the pending timeout (200 ms) returns it.
  ASSERT_TRUE(WaitFor([&] {
    uv_run(&loop_, UV_RUN_NOWAIT);
    return ingest_->flushed_count() == 1u;
  }, std::chrono::seconds(5)));
}

TEST_F(SegmentRpcTest, BadInputIsInvalidArgument) {
  EXPECT_EQ(Call(kSegmentNext, "lots").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Call(kSegmentRead, "../../etc/passwd").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Call(kSegmentCommit, "x\n").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Call(kSegmentReplicate, "not a record\n").status().code(), Code::kInvalidArgument);
}

TEST_F(SegmentRpcTest, ReplicaIsStoredAndAReplayIsHarmless) {
  const std::string data = Records(1700000000000, 100);
  EXPECT_EQ(*Call(kSegmentReplicate, data), "100");
  EXPECT_EQ(store_->segment_count(), 1u);
  // The same range again, plus records inside it that were not there: all end up stored.
  std::string more = Records(1700000000000, 100);
  EXPECT_EQ(*Call(kSegmentReplicate, more), "100");
  uint64_t records = 0;
  for (const auto& s : store_->All()) records += s->records();
  EXPECT_GE(records, 100u);
}

}  // namespace
}  // namespace oklog
