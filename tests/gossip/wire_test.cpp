#include "gossip/wire.h"

#include <gtest/gtest.h>

#include <random>

namespace oklog::gossip {
namespace {

const uint32_t kHash = ClusterHash("test");

std::string Packet(const std::vector<Message>& msgs, uint32_t hash = kHash) {
  PacketBuilder b(hash);
  for (const Message& m : msgs) EXPECT_TRUE(b.TryAdd(EncodeMessage(m)));
  return std::move(b).Finish();
}

std::vector<Message> AllKinds() {
  return {Ping{7, "target", "source"},
          PingReq{8, "target", "10.0.0.1:7659"},
          Ack{9},
          Nack{10},
          Alive{1234567890123ull, "node-a", "127.0.0.1:7659", std::string("\x00\x01meta", 6)},
          Suspect{5, "node-b", "node-c"},
          Dead{6, "node-d", "node-d"}};
}

TEST(WireTest, EveryPacketMessageRoundTrips) {
  std::vector<Message> msgs = AllKinds();
  auto decoded = DecodePacket(Packet(msgs), kHash);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_EQ(decoded->messages.size(), msgs.size());
  EXPECT_EQ(std::get<Ping>(decoded->messages[0]).target, "target");
  EXPECT_EQ(std::get<PingReq>(decoded->messages[1]).target_addr, "10.0.0.1:7659");
  EXPECT_EQ(std::get<Ack>(decoded->messages[2]).seq, 9u);
  EXPECT_EQ(std::get<Nack>(decoded->messages[3]).seq, 10u);
  const Alive& a = std::get<Alive>(decoded->messages[4]);
  EXPECT_EQ(a.incarnation, 1234567890123ull);
  EXPECT_EQ(a.meta, std::string("\x00\x01meta", 6));
  EXPECT_EQ(std::get<Suspect>(decoded->messages[5]).from, "node-c");
  EXPECT_EQ(std::get<Dead>(decoded->messages[6]).node, "node-d");
}

TEST(WireTest, SyncRoundTripsOnStreams) {
  Sync s{Sync::kJoin, 42, "me", std::vector<SyncState>{{"a", "1.2.3.4:1", 3, MemberState::kLeft, "m"}}};
  auto d = DecodeStreamMessage(EncodeMessage(s));
  ASSERT_TRUE(d.ok());
  const Sync& got = std::get<Sync>(d.value());
  EXPECT_EQ(got.digest, 42u);
  ASSERT_TRUE(got.states);
  EXPECT_EQ((*got.states)[0].state, MemberState::kLeft);
  auto digest_only = DecodeStreamMessage(EncodeMessage(Sync{0, 1, "me", {}}));
  ASSERT_TRUE(digest_only.ok());
  EXPECT_FALSE(std::get<Sync>(digest_only.value()).states);
}

TEST(WireTest, ProbeMessagesAreSmall) {
  EXPECT_LE(Packet({Ping{0xFFFFFFF0u, "node-07", "node-01"}}).size(), 32u);  // memberlist: 73
  EXPECT_LE(Packet({Ack{0xFFFFFFF0u}}).size(), 13u);                         // memberlist: 20
}

TEST(WireTest, OtherClusterIsRejected) {
  EXPECT_FALSE(DecodePacket(Packet({Ack{1}}, ClusterHash("other")), kHash).ok());
}

TEST(WireTest, EveryTruncationIsRejected) {
  std::string p = Packet(AllKinds());
  for (size_t n = 0; n < p.size(); ++n) {
    auto d = DecodePacket(p.substr(0, n), kHash);
    // A cut exactly between messages is a valid shorter packet; anything else must fail.
    if (d.ok()) {
      EXPECT_LT(d->messages.size(), AllKinds().size()) << n;
    }
  }
  std::string s = EncodeMessage(Sync{0, 1, "me", std::vector<SyncState>(3, SyncState{"a", "b", 1, MemberState::kAlive, ""})});
  for (size_t n = 0; n < s.size(); ++n) EXPECT_FALSE(DecodeStreamMessage(s.substr(0, n)).ok()) << n;
}

TEST(WireTest, EveryByteFlipIsHandled) {
  std::string p = Packet(AllKinds());
  for (size_t i = 0; i < p.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string q = p;
      q[i] = static_cast<char>(q[i] ^ (1 << bit));
      (void)DecodePacket(q, kHash);  // must not crash, leak or throw
    }
  }
}

TEST(WireTest, OversizeInputIsRejected) {
  EXPECT_FALSE(DecodePacket(std::string(kMaxPacketBytes + 1, '\x90'), kHash).ok());
  Alive big{1, std::string(kMaxNameBytes + 1, 'x'), "a:1", ""};
  PacketBuilder b(kHash);
  ASSERT_TRUE(b.TryAdd(EncodeMessage(big)));
  EXPECT_FALSE(DecodePacket(std::move(b).Finish(), kHash).ok());
  Alive fat_meta{1, "x", "a:1", std::string(kMaxMetaBytes + 1, 'm')};
  PacketBuilder b2(kHash);
  ASSERT_TRUE(b2.TryAdd(EncodeMessage(fat_meta)));
  EXPECT_FALSE(DecodePacket(std::move(b2).Finish(), kHash).ok());
}

TEST(WireTest, ForgedHugeArrayHeaderIsRejectedCheaply) {
  std::string p = Packet({Ack{1}});
  p.resize(kPacketHeaderBytes);
  p += "\xdd\xff\xff\xff\xff";  // array32 with 4 billion elements
  EXPECT_FALSE(DecodePacket(p, kHash).ok());
  EXPECT_FALSE(DecodeStreamMessage("\xdd\x7f\xff\xff\xff").ok());
}

TEST(WireTest, TooManyMessagesAreRejected) {
  std::string p = Packet({Ack{1}});
  std::string ack = EncodeMessage(Ack{1});
  for (size_t i = 0; i < kMaxMessagesPerPacket + 1; ++i) p += ack;
  EXPECT_FALSE(DecodePacket(p, kHash).ok());
}

TEST(WireTest, UnknownMessageTypesAreSkipped) {
  std::string p = Packet({Ack{1}});
  p += "\x92\x63\x01";  // [99, 1]
  auto d = DecodePacket(p, kHash);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->messages.size(), 1u);
  EXPECT_EQ(d->unknown_skipped, 1u);
}

TEST(WireTest, SyncIsNotAllowedInPacketsNorProbesOfOtherKindsOnStreams) {
  EXPECT_FALSE(DecodeStreamMessage(EncodeMessage(Alive{1, "a", "b:1", ""})).ok());
  PacketBuilder b(kHash);
  ASSERT_TRUE(b.TryAdd(EncodeMessage(Sync{0, 1, "me", {}})));
  EXPECT_FALSE(DecodePacket(std::move(b).Finish(), kHash).ok());
}

TEST(WireTest, RandomBytesNeverCrash) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 200, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    if (i % 2 == 0 && junk.size() >= kPacketHeaderBytes) junk.replace(0, kPacketHeaderBytes, Packet({Ack{1}}).substr(0, 6));
    (void)DecodePacket(junk, kHash);
    (void)DecodeStreamMessage(junk);
  }
}

TEST(WireTest, PacketBuilderRespectsBudget) {
  PacketBuilder b(kHash, 100);
  std::string alive = EncodeMessage(Alive{1, "node", "127.0.0.1:7659", std::string(40, 'm')});
  EXPECT_TRUE(b.TryAdd(alive));
  EXPECT_FALSE(b.TryAdd(alive));
  EXPECT_LE(std::move(b).Finish().size(), 100u);
}

}  // namespace
}  // namespace oklog::gossip
