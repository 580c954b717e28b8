// NodeMeta, PeerView and the /cluster JSON.
#include <gtest/gtest.h>

#include "gossip/node_meta.h"
#include "gossip/peer_view.h"
#include "gossip/wire.h"

namespace oklog::gossip {
namespace {

TEST(NodeMetaTest, RoundTripsAndEnforcesTheLimit) {
  NodeMeta m{{"ingest", "store"}, "10.0.0.1:7650", 7651, 7652, 7653, "0.1.0"};
  auto enc = EncodeNodeMeta(m);
  ASSERT_TRUE(enc.ok());
  EXPECT_LT(enc->size(), 64u);
  auto dec = DecodeNodeMeta(*enc);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(dec.value(), m);
  m.api_addr = std::string(600, 'x');
  EXPECT_FALSE(EncodeNodeMeta(m).ok());
  std::string e = *enc;
  for (size_t n = 1; n < e.size(); ++n) EXPECT_FALSE(DecodeNodeMeta(e.substr(0, n)).ok());
}

MemberEvent Ev(MemberEvent::Kind k, const std::string& name, MemberState st, std::vector<std::string> roles) {
  NodeMeta meta;
  meta.roles = std::move(roles);
  meta.api_addr = name + ":7650";
  return {k, MemberInfo{name, name + ":7659", EncodeNodeMeta(meta).value(), 3, st, {}}};
}

TEST(PeerViewTest, LiveByRoleAndEventsInOrder) {
  PeerView v("a");
  std::vector<std::string> seen;
  uint64_t id = v.Subscribe([&](const PeerEvent& e) { seen.push_back(e.peer.name + ":" + std::string(EventKindName(e.kind))); });
  v.Apply(Ev(MemberEvent::Kind::kJoin, "a", MemberState::kAlive, {"ingest"}));
  v.Apply(Ev(MemberEvent::Kind::kJoin, "b", MemberState::kAlive, {"store"}));
  v.Apply(Ev(MemberEvent::Kind::kJoin, "c", MemberState::kAlive, {"store"}));
  v.Apply(Ev(MemberEvent::Kind::kSuspect, "c", MemberState::kSuspect, {"store"}));
  EXPECT_EQ(v.Live("store").size(), 2u);  // suspect members are still live
  v.Apply(Ev(MemberEvent::Kind::kDead, "c", MemberState::kDead, {"store"}));
  EXPECT_EQ(v.Live("store").size(), 1u);
  EXPECT_EQ(v.All().size(), 3u);
  EXPECT_TRUE(v.Find("a")->is_self);
  v.Unsubscribe(id);
  v.Apply(Ev(MemberEvent::Kind::kReap, "c", MemberState::kDead, {"store"}));
  EXPECT_EQ(v.All().size(), 2u);
  EXPECT_EQ(seen, (std::vector<std::string>{"a:join", "b:join", "c:join", "c:suspect", "c:dead"}));
}

TEST(PeerViewTest, ClusterJsonHasTheDocumentedShape) {
  PeerView v("a\"1");
  v.Apply(Ev(MemberEvent::Kind::kJoin, "a\"1", MemberState::kAlive, {"ingest", "store"}));
  v.Apply(Ev(MemberEvent::Kind::kLeft, "b", MemberState::kLeft, {}));
  EXPECT_EQ(ClusterJson(v),
            "{\"self\":\"a\\\"1\",\"members\":["
            "{\"name\":\"a\\\"1\",\"addr\":\"a\\\"1:7659\",\"state\":\"alive\",\"incarnation\":3,"
            "\"roles\":[\"ingest\",\"store\"],\"api\":\"a\\\"1:7650\"},"
            "{\"name\":\"b\",\"addr\":\"b:7659\",\"state\":\"left\",\"incarnation\":3,\"roles\":[],\"api\":\"b:7650\"}]}");
}

}  // namespace
}  // namespace oklog::gossip
