// NodeMeta, PeerView and the /cluster JSON.
#include <gtest/gtest.h>

#include <msgpack.hpp>

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

// The disks a node gossips as full, its load and shedding reason: round trip; the 6-field meta of the version before reads
// as none full; a malformed list is Corruption.
TEST(NodeMetaTest, FullDisksRoundTripAndAnOlderMetaReadsAsNoneFull) {
  NodeMeta m{{"ingest", "store"}, "10.0.0.1:7650", 7651, 7652, 7653, "0.1.0", {"ingest", "store"},
             {12, 1ull << 40, 3ull << 30}, "the stores consumed nothing for 31s"};
  auto dec = DecodeNodeMeta(EncodeNodeMeta(m).value());
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  EXPECT_EQ(dec.value(), m);
  EXPECT_EQ(dec->full, (std::vector<std::string>{"ingest", "store"}));

  auto pack = [](auto&& fill, uint32_t fields) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_array(fields);
    pk.pack_array(1);
    pk.pack(std::string("store"));
    pk.pack(std::string("10.0.0.1:7650"));
    pk.pack_uint16(0);
    pk.pack_uint16(0);
    pk.pack_uint16(0);
    pk.pack(std::string("0.1.0"));
    fill(pk);
    return std::string(buf.data(), buf.size());
  };
  auto older = DecodeNodeMeta(pack([](auto&) {}, 6));
  ASSERT_TRUE(older.ok()) << older.status().ToString();
  EXPECT_TRUE(older->full.empty());
  EXPECT_EQ(older->roles, std::vector<std::string>{"store"});
  auto newer = DecodeNodeMeta(pack([](auto& pk) {
    pk.pack_array(0);
    pk.pack_array(3);
    pk.pack(1), pk.pack(2), pk.pack(3);
    pk.pack(std::string(""));
    pk.pack(std::string("a later field"));
  }, 10));
  ASSERT_TRUE(newer.ok()) << "a field appended later must not break this version: " << newer.status().ToString();
  EXPECT_FALSE(DecodeNodeMeta(pack([](auto& pk) { pk.pack(7); }, 7)).ok()) << "full is not a list";
  EXPECT_FALSE(DecodeNodeMeta(pack([](auto& pk) { pk.pack_array(1); pk.pack(7); }, 7)).ok()) << "a full dir is not a string";
  EXPECT_FALSE(DecodeNodeMeta(pack([](auto& pk) { pk.pack_array(0), pk.pack_array(2), pk.pack(1), pk.pack(2), pk.pack(""); }, 9)).ok())
      << "a load of two figures";
  EXPECT_FALSE(DecodeNodeMeta(pack([](auto& pk) { pk.pack_array(0), pk.pack_array(3), pk.pack(1), pk.pack(-2), pk.pack(3), pk.pack(""); }, 9)).ok())
      << "a negative load figure";
  EXPECT_FALSE(DecodeNodeMeta(pack([](auto& pk) { pk.pack_array(0), pk.pack_array(3), pk.pack(1), pk.pack(2), pk.pack(3), pk.pack(4); }, 9)).ok())
      << "a shedding reason that is not a string";
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
            "\"roles\":[\"ingest\",\"store\"],\"api\":\"a\\\"1:7650\",\"disk_full\":[],"
            "\"load\":{\"connections\":0,\"unconsumed_bytes\":0,\"free_bytes\":0},\"shedding\":\"\"},"
            "{\"name\":\"b\",\"addr\":\"b:7659\",\"state\":\"left\",\"incarnation\":3,\"roles\":[],\"api\":\"b:7650\","
            "\"disk_full\":[]}]}");
}

}  // namespace
}  // namespace oklog::gossip
