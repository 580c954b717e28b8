// RpcBridge, the blocking client of plain threads, against a real RpcServer on loopback, the
// loop on its own thread.
#include "rpc/rpc_bridge.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "loop_util.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"

namespace oklog::rpc {
namespace {

class RpcBridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = RpcServer::Create(loop_.loop(), {"t", "server"}, nullptr);
    ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
    addr_ = "127.0.0.1:" + std::to_string(server_->port());
    server_->Handle("echo", [](std::shared_ptr<ServerCall> c) { c->Respond(Status::Ok(), c->body()); });
    server_->Handle("never", [this](std::shared_ptr<ServerCall> c) { held_.push_back(c); });  // no answer
    client_ = RpcClient::Create(loop_.loop(), {"t", "client"}, nullptr);
    auto b = RpcBridge::Create(loop_.loop(), client_.get());
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    bridge_ = std::move(b).value();
    loop_id_ = std::this_thread::get_id();
    loop_.Start();
    loop_id_ = loop_.Run([] { return std::this_thread::get_id(); });
  }
  void TearDown() override {
    loop_.Stop([&] {
      if (!bridge_closed_) bridge_->Close();
      client_->Close();
      held_.clear();
      server_->Close();
    });
  }

  testing::LoopThread loop_;
  std::unique_ptr<RpcServer> server_;
  std::unique_ptr<RpcClient> client_;
  std::unique_ptr<RpcBridge> bridge_;
  std::vector<std::shared_ptr<ServerCall>> held_;  // loop thread only
  std::string addr_;
  std::thread::id loop_id_;
  bool bridge_closed_ = false;
};

TEST_F(RpcBridgeTest, ManyThreadsCallAtOnceAndEachGetsItsOwnAnswer) {
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string body = "t" + std::to_string(t) + "-" + std::to_string(i) + std::string(static_cast<size_t>(i) * 997, 'x');
        Result<std::string> r = bridge_->Call(addr_, "echo", body, Duration(5000));
        if (!r.ok() || *r != body) ++wrong;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(RpcBridgeTest, RunOnLoopRunsOnTheLoopThreadAndErrorsComeBackAsStatuses) {
  std::thread::id ran_on;
  ASSERT_TRUE(bridge_->RunOnLoop([&] { ran_on = std::this_thread::get_id(); }).ok());
  EXPECT_EQ(ran_on, loop_id_);
  EXPECT_EQ(bridge_->Call(addr_, "no.such.method", "", Duration(2000)).status().code(), Code::kNotFound);
  EXPECT_EQ(bridge_->Call("not an address", "echo", "", Duration(2000)).status().code(), Code::kInvalidArgument);
  // A server that never answers: the deadline ends the call.
  Result<std::string> r = bridge_->Call(addr_, "never", "", Duration(200));
  EXPECT_EQ(r.status().code(), Code::kTimedOut) << r.status().ToString();
}

TEST_F(RpcBridgeTest, AfterCloseCallsAndLoopWorkAreCancelledAndNothingHangs) {
  // A call in flight when the bridge and client close ends with Cancelled: failed by the bridge
  // if still queued, by the client if it was already sent.
  auto pending = bridge_->CallAsync(addr_, "never", "", Duration(30000));
  loop_.Run([&] {
    bridge_->Close();
    bridge_closed_ = true;
    client_->Close();
    return 0;
  });
  EXPECT_EQ(pending.get().status().code(), Code::kCancelled);
  EXPECT_EQ(bridge_->Call(addr_, "echo", "x", Duration(1000)).status().code(), Code::kCancelled);
  bool ran = false;
  EXPECT_EQ(bridge_->RunOnLoop([&] { ran = true; }).code(), Code::kCancelled);
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace oklog::rpc
