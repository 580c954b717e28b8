// Several GossipNodes on 127.0.0.1 (port 0) in one process and one loop, with fast timers.
#include "gossip/gossip_node.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <map>
#include <utility>

#include "common/metrics.h"
#include "gossip/membership.h"
#include "gossip/transport.h"
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

// The stream half of the transport in memory (as Redpanda's raft fixture does): an exchange is
// delivered on a later loop turn to the node registered at the address, as if by the RPC.
// Unknown or closed addresses fail, as a refused connection would.
class MemoryStreams : public StreamTransport {
 public:
  MemoryStreams(uv_loop_t* loop, std::map<std::string, GossipNode*>* nodes) : loop_(loop), nodes_(nodes) {}
  void set_self(std::string addr) { self_ = std::move(addr); }
  void Exchange(const std::string& addr, std::string body, Duration, Done done) override {
    auto* d = new Delivery{{}, this, addr, std::move(body), std::move(done)};
    uv_timer_init(loop_, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, [](uv_timer_t* t) {
      auto* d = static_cast<Delivery*>(t->data);
      auto it = d->self->nodes_->find(d->to);
      if (it == d->self->nodes_->end()) d->done(Status::Unavailable("connection refused"));
      else d->done(it->second->ServeStream(d->self->self_, d->body));
      uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete static_cast<Delivery*>(h->data); });
    }, 0, 0);
  }

 private:
  struct Delivery {
    uv_timer_t timer;
    MemoryStreams* self;
    std::string to, body;
    Done done;
  };
  uv_loop_t* loop_;
  std::map<std::string, GossipNode*>* nodes_;
  std::string self_;
};

class GossipNodeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    by_addr_.clear();
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
  GossipNode* Add(std::vector<std::string> seeds, const std::string& name, std::vector<std::string> roles = {"store"}) {
    GossipNode::Options o;
    o.name = name;
    o.bind_addr = next_bind_.empty() ? "127.0.0.1:0" : std::exchange(next_bind_, "");
    o.udp_fd = std::move(next_udp_);
    o.seeds = std::move(seeds);
    o.cluster_name = "test";
    o.meta.roles = std::move(roles);
    o.meta.api_addr = "127.0.0.1:7650";
    o.tweak = Fast;
    streams_.push_back(std::make_unique<MemoryStreams>(&loop_, &by_addr_));
    o.streams = streams_.back().get();
    registries_.push_back(std::make_unique<Registry>());
    auto n = GossipNode::Create(&loop_, std::move(o), registries_.back().get());
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    nodes_.push_back(std::move(n).value());
    GossipNode* g = nodes_.back().get();
    streams_.back()->set_self(g->advertise_addr());
    by_addr_[g->advertise_addr()] = g;
    g->Start();
    return g;
  }
  // Closes a node as a crash or a stop would: its address stops answering streams too.
  void CloseNode(GossipNode* n) {
    by_addr_.erase(n->advertise_addr());
    n->Close();
  }

  // Runs the loop until pred() or timeout_ms of real time; a 10 ms ticker keeps it waking.
  bool RunUntil(const std::function<bool()>& pred, int timeout_ms) {
    return RunLoopUntil(&loop_, pred, timeout_ms, 10);
  }

  size_t LiveCount(GossipNode* n) { return n->peer_view().Live().size(); }

  uv_loop_t loop_;
  UniqueFd next_udp_;      // the next Add adopts it (bound to next_bind_)
  std::string next_bind_;
  std::map<std::string, GossipNode*> by_addr_;
  std::vector<std::unique_ptr<MemoryStreams>> streams_;  // before nodes_: outlive them
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

// The node binds nothing when it is given a bound socket (the cluster port's owner binds both
// sides together): it probes and answers on that socket.
TEST_F(GossipNodeTest, ANodeGivenABoundUdpSocketUsesIt) {
  GossipNode* a = Add({}, "a");
  UniqueFd udp(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(udp.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(getsockname(udp.get(), reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const uint16_t port = ntohs(sa.sin_port);
  next_udp_ = std::move(udp);
  next_bind_ = "127.0.0.1:" + std::to_string(port);
  GossipNode* b = Add({a->advertise_addr()}, "b");
  EXPECT_EQ(b->port(), port);
  EXPECT_EQ(b->advertise_addr(), "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(RunUntil([&] { return LiveCount(a) == 2 && LiveCount(b) == 2; }, 5000));
  // a's probes reach b's adopted socket and b's acks come back from it.
  auto received = [](Registry* r) {
    std::string m = r->Render();
    const std::string sample = "\noklog_gossip_packets_received_total ";  // not the # HELP line
    size_t at = m.find(sample);
    return at == std::string::npos ? 0L : std::stol(m.substr(at + sample.size()));
  };
  ASSERT_TRUE(RunUntil([&] { return received(registries_[0].get()) > 0 && received(registries_[1].get()) > 0; }, 5000));
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
  CloseNode(d);
  auto state_at = [](GossipNode* n, const std::string& who) {
    const Peer* p = n->peer_view().Find(who);
    return p ? p->state : MemberState::kAlive;
  };
  ASSERT_TRUE(RunUntil([&] { return state_at(a, "d") == MemberState::kLeft && state_at(b, "d") == MemberState::kLeft; }, 3000));
  CloseNode(c);  // a crash, as far as the others can tell
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

// (Seeds given as names are resolved by the node's transport: cluster_process_test.)
TEST_F(GossipNodeTest, SeedThatDoesNotAnswerIsRetriedUntilItAnswers) {
  GossipNode* b = Add({"localhost:1"}, "b");  // nobody there
  ASSERT_TRUE(RunUntil([&] { return b->membership().stats().syncs_started >= 2; }, 3000));
  EXPECT_EQ(LiveCount(b), 1u);
}

TEST_F(GossipNodeTest, WithoutAStreamTransportStreamsAreDroppedAndCounted) {
  GossipNode* a = Add({}, "a");
  GossipNode::Options o;
  o.name = "lonely";
  o.bind_addr = "127.0.0.1:0";
  o.cluster_name = "test";
  o.seeds = {a->advertise_addr()};
  o.tweak = Fast;
  Registry reg;
  auto n = GossipNode::Create(&loop_, std::move(o), &reg);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  (*n)->Start();  // the join is a push/pull stream: it cannot happen
  ASSERT_TRUE(RunUntil([&] { return reg.Render().find("oklog_gossip_packets_dropped_total 0") == std::string::npos; },
                       3000));
  EXPECT_EQ((*n)->peer_view().Live().size(), 1u);
  (*n)->Close();
  RunUntil([&] { return (*n)->done(); }, 2000);
}

// A ping_req from outside naming a non-member: nothing is sent to the named address, and the
// refusal shows in the metric by reason (every reason is exported from the start, at 0).
TEST_F(GossipNodeTest, RefusedPingReqIsCountedByReason) {
  GossipNode* a = Add({}, "a");
  const std::string metric = "oklog_gossip_messages_rejected_total{reason=\"ping_req_unknown_target\"} ";
  ASSERT_NE(registries_[0]->Render().find(metric + "0"), std::string::npos);
  EXPECT_NE(registries_[0]->Render().find("oklog_gossip_messages_rejected_total{reason=\"address_conflict\"} 0"),
            std::string::npos);
  PacketBuilder b(ClusterHash("test"));
  ASSERT_TRUE(b.TryAdd(EncodeMessage(PingReq{1, "ghost", "192.0.2.1:7659"})));
  const std::string bytes = std::move(b).Finish();
  UniqueFd udp(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(a->port());
  ASSERT_EQ(sendto(udp.get(), bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
            static_cast<ssize_t>(bytes.size()));
  ASSERT_TRUE(RunUntil([&] { return registries_[0]->Render().find(metric + "1") != std::string::npos; }, 3000));
  EXPECT_EQ(a->membership().stats().rejected[static_cast<size_t>(Rejection::kPingReqUnknownTarget)], 1u);
}

}  // namespace
}  // namespace oklog::gossip
