// Several GossipNodes on 127.0.0.1 (port 0) in one process and one loop, with fast timers.
#include "gossip/gossip_node.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>

#include "common/metrics.h"
#include "rpc/frame_codec.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"
#include "gossip/membership.h"
#include "loop_util.h"

namespace oklog::gossip {
namespace {

void Fast(Config& c) {
  c.probe_interval = Duration(100);
  c.probe_timeout = Duration(40);
  c.gossip_interval = Duration(20);
  c.push_pull_interval = Duration(2000);
  c.reconnect_interval = Duration(500);
  c.join_retry_min = Duration(100);
  c.join_sync_interval = Duration(100);
  c.tcp_timeout = Duration(1000);
}

class GossipNodeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    for (auto& n : nodes_)
      if (n) n->Close();
    RunUntil([&] {
      for (auto& n : nodes_)
        if (n && !n->done()) return false;
      return true;
    }, 5000);
    nodes_.clear();
    uv_run(&loop_, UV_RUN_NOWAIT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // before_start runs between Create and Start (to hand the port's TCP side to an RpcServer).
  GossipNode* Add(std::vector<std::string> seeds, const std::string& name, std::vector<std::string> roles = {"store"},
                  const std::function<void(GossipNode*)>& before_start = nullptr) {
    GossipNode::Options o;
    o.name = name;
    o.bind_addr = "127.0.0.1:0";
    o.seeds = std::move(seeds);
    o.cluster_name = "test";
    o.meta.roles = std::move(roles);
    o.meta.api_addr = "127.0.0.1:7650";
    o.tweak = Fast;
    registries_.push_back(std::make_unique<Registry>());
    auto n = GossipNode::Create(&loop_, o, registries_.back().get());
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    nodes_.push_back(std::move(n).value());
    if (before_start) before_start(nodes_.back().get());
    nodes_.back()->Start();
    return nodes_.back().get();
  }

  // Runs the loop until pred() or timeout_ms of real time; a 10 ms ticker keeps it waking.
  bool RunUntil(const std::function<bool()>& pred, int timeout_ms) {
    return RunLoopUntil(&loop_, pred, timeout_ms, 10);
  }

  size_t LiveCount(GossipNode* n) { return n->peer_view().Live().size(); }

  uv_loop_t loop_;
  std::vector<std::unique_ptr<Registry>> registries_;
  std::vector<std::unique_ptr<GossipNode>> nodes_;
};

TEST_F(GossipNodeTest, NodesJoinThroughTheFirstAndSeeEachOther) {
  GossipNode* a = Add({}, "a");
  std::string seed = a->advertise_addr();
  GossipNode* b = Add({seed}, "b");
  GossipNode* c = Add({seed}, "c", {"ingest"});
  ASSERT_TRUE(RunUntil([&] { return LiveCount(a) == 3 && LiveCount(b) == 3 && LiveCount(c) == 3; }, 5000));
  EXPECT_EQ(b->peer_view().Live("ingest").size(), 1u);
  EXPECT_EQ(b->peer_view().Live("store").size(), 2u);
  std::string json = b->ClusterJson();
  EXPECT_NE(json.find("\"self\":\"b\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"name\":\"c\""), std::string::npos);
  EXPECT_NE(json.find("\"state\":\"alive\""), std::string::npos);
  EXPECT_NE(json.find("\"roles\":[\"ingest\"]"), std::string::npos);
  EXPECT_NE(json.find("\"api\":\"127.0.0.1:7650\""), std::string::npos);
  std::string metrics = registries_[1]->Render();
  EXPECT_NE(metrics.find("oklog_gossip_members{state=\"alive\"} 3"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("oklog_gossip_packets_sent_total"), std::string::npos);
}

TEST_F(GossipNodeTest, ClosedNodeIsDeclaredDeadAndLeavingNodeIsLeft) {
  GossipNode* a = Add({}, "a");
  GossipNode* b = Add({a->advertise_addr()}, "b");
  GossipNode* c = Add({a->advertise_addr()}, "c");
  GossipNode* d = Add({a->advertise_addr()}, "d");
  ASSERT_TRUE(RunUntil([&] { return LiveCount(a) == 4 && LiveCount(b) == 4 && LiveCount(c) == 4 && LiveCount(d) == 4; }, 5000));
  bool left = false;
  d->Leave([&] { left = true; });
  ASSERT_TRUE(RunUntil([&] { return left; }, 3000));
  d->Close();
  auto state_at = [](GossipNode* n, const std::string& who) {
    const Peer* p = n->peer_view().Find(who);
    return p ? p->state : MemberState::kAlive;
  };
  ASSERT_TRUE(RunUntil([&] { return state_at(a, "d") == MemberState::kLeft && state_at(b, "d") == MemberState::kLeft; }, 3000));
  c->Close();  // a crash, as far as the others can tell
  ASSERT_TRUE(RunUntil([&] { return state_at(a, "c") == MemberState::kDead && state_at(b, "c") == MemberState::kDead; }, 8000));
  EXPECT_EQ(state_at(a, "d"), MemberState::kLeft);
}

TEST_F(GossipNodeTest, MetadataUpdateReachesPeers) {
  GossipNode* a = Add({}, "a");
  GossipNode* b = Add({a->advertise_addr()}, "b");
  ASSERT_TRUE(RunUntil([&] { return LiveCount(a) == 2 && LiveCount(b) == 2; }, 5000));
  int updates = 0;
  a->peer_view().Subscribe([&](const PeerEvent& e) { updates += e.peer.name == "b" && e.kind == MemberEvent::Kind::kUpdate; });
  NodeMeta meta;
  meta.roles = {"ingest", "store"};
  meta.api_addr = "127.0.0.1:9999";
  ASSERT_TRUE(b->UpdateMeta(meta).ok());
  ASSERT_TRUE(RunUntil([&] { const Peer* p = a->peer_view().Find("b"); return p && p->meta == meta; }, 3000));
  EXPECT_GE(updates, 1);
}

TEST_F(GossipNodeTest, StreamFromAnotherClusterIsDropped) {
  GossipNode* a = Add({}, "a");
  // A raw client speaking for cluster "other".
  struct Client {
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t w;
    std::string data;
    bool closed = false;
  } cl;
  uv_tcp_init(&loop_, &cl.tcp);
  cl.tcp.data = &cl;
  cl.conn.data = &cl;
  cl.data = rpc::EncodeFrame(rpc::EncodeHello({rpc::kClusterProtocolVersion, "other", "intruder"}));
  sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", a->port(), &sa);
  uv_tcp_connect(&cl.conn, &cl.tcp, reinterpret_cast<sockaddr*>(&sa), [](uv_connect_t* req, int status) {
    auto* c = static_cast<Client*>(req->data);
    if (status != 0) return;
    uv_buf_t b = uv_buf_init(c->data.data(), static_cast<unsigned>(c->data.size()));
    uv_write(&c->w, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1, [](uv_write_t*, int) {});
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t*, size_t s, uv_buf_t* b) { *b = uv_buf_init(new char[s], static_cast<unsigned>(s)); },
        [](uv_stream_t* st, ssize_t n, const uv_buf_t* b) {
          delete[] b->base;
          if (n < 0) {
            auto* c = static_cast<Client*>(st->data);
            c->closed = true;
            uv_read_stop(st);
          }
        });
  });
  ASSERT_TRUE(RunUntil([&] { return cl.closed; }, 3000));
  uv_close(reinterpret_cast<uv_handle_t*>(&cl.tcp), [](uv_handle_t* h) { static_cast<Client*>(h->data)->data = "gone"; });
  ASSERT_TRUE(RunUntil([&] { return cl.data == "gone"; }, 1000));  // cl lives on this stack frame
  EXPECT_NE(registries_[0]->Render().find("oklog_gossip_packets_dropped_total 1"), std::string::npos);
}

TEST_F(GossipNodeTest, SeedGivenAsNameIsResolvedAndRetriedUntilItAnswers) {
  GossipNode* b = Add({"localhost:1"}, "b");  // nobody there yet, and a name
  ASSERT_TRUE(RunUntil([&] { return b->membership().stats().syncs_started >= 2; }, 3000));
  EXPECT_EQ(LiveCount(b), 1u);
}

// GossipNode hands its cluster port's TCP side to an RpcServer, which serves "gossip" next to
// data methods: the nodes still join each other, and a data call reaches the same port.
TEST_F(GossipNodeTest, GossipRunsThroughTheRpcServer) {
  std::vector<std::unique_ptr<rpc::RpcServer>> servers;
  auto serve = [&](GossipNode* g) {
    servers.push_back(rpc::RpcServer::Create(&loop_, {"test", g->advertise_addr()}, nullptr));
    rpc::RpcServer* srv = servers.back().get();
    srv->Handle(std::string(rpc::kGossipMethod), [g](std::shared_ptr<rpc::ServerCall> c) {
      c->Respond(Status::Ok(), g->ServeStream(c->peer(), c->body()));
    });
    srv->Handle("echo", [](std::shared_ptr<rpc::ServerCall> c) { c->Respond(Status::Ok(), c->body()); });
    g->SetAcceptHandler([srv](uv_stream_t* l) { srv->Accept(l); });
  };
  GossipNode* a = Add({}, "a", {"store"}, serve);
  GossipNode* b = Add({a->advertise_addr()}, "b", {"store"}, serve);
  EXPECT_TRUE(RunUntil([&] { return LiveCount(a) == 2 && LiveCount(b) == 2; }, 5000));
  auto client = rpc::RpcClient::Create(&loop_, {"test", "client"}, nullptr);
  std::optional<Result<std::string>> out;
  client->Call(b->advertise_addr(), "echo", "data", rpc::Duration(2000), [&](Result<std::string> r) { out = r; });
  ASSERT_TRUE(RunUntil([&] { return out.has_value(); }, 3000));
  ASSERT_TRUE(out->ok()) << out->status().ToString();
  EXPECT_EQ(**out, "data");
  client->Close();
  for (auto& s : servers) s->Close();
  RunUntil([&] {
    for (auto& s : servers)
      if (!s->done()) return false;
    return true;
  }, 3000);
}

}  // namespace
}  // namespace oklog::gossip
