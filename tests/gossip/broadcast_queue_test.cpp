#include "gossip/broadcast_queue.h"

#include <gtest/gtest.h>

namespace oklog::gossip {
namespace {

const uint32_t kHash = ClusterHash("t");

std::vector<Message> Drain(BroadcastQueue& q, int limit, size_t budget = kMaxPacketBytes) {
  PacketBuilder b(kHash, budget);
  q.Fill(&b, limit);
  auto d = DecodePacket(std::move(b).Finish(), kHash);
  return d.ok() ? d->messages : std::vector<Message>{};
}

TEST(BroadcastQueueTest, NewerNewsAboutANodeInvalidatesOlder) {
  BroadcastQueue q;
  q.Push("a", EncodeMessage(Alive{1, "a", "x:1", ""}));
  q.Push("a", EncodeMessage(Dead{1, "a", "b"}));
  EXPECT_EQ(q.size(), 1u);
  auto msgs = Drain(q, 3);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Dead>(msgs[0]));
}

TEST(BroadcastQueueTest, MessageIsDroppedAfterRetransmitLimit) {
  BroadcastQueue q;
  q.Push("a", EncodeMessage(Suspect{1, "a", "b"}));
  EXPECT_EQ(Drain(q, 3).size(), 1u);
  EXPECT_EQ(Drain(q, 3).size(), 1u);
  EXPECT_TRUE(q.Contains("a"));
  EXPECT_EQ(Drain(q, 3).size(), 1u);
  EXPECT_FALSE(q.Contains("a"));
  EXPECT_TRUE(Drain(q, 3).empty());
}

TEST(BroadcastQueueTest, LeastSentThenNewestGoFirst) {
  BroadcastQueue q;
  q.Push("old", EncodeMessage(Alive{1, "old", "x:1", std::string(300, 'o')}));
  (void)Drain(q, 10);  // "old" sent once
  q.Push("new1", EncodeMessage(Alive{1, "new1", "x:1", std::string(300, 'a')}));
  q.Push("new2", EncodeMessage(Alive{1, "new2", "x:1", std::string(300, 'b')}));
  auto msgs = Drain(q, 10, 700);  // room for two
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(std::get<Alive>(msgs[0]).node, "new2");
  EXPECT_EQ(std::get<Alive>(msgs[1]).node, "new1");
}

TEST(BroadcastQueueTest, PacksManyMessagesIntoOnePacketWithinBudget) {
  BroadcastQueue q;
  for (int i = 0; i < 200; ++i) {
    std::string n = "node-" + std::to_string(i);
    q.Push(n, EncodeMessage(Alive{1, n, "127.0.0.1:7659", "roles"}));
  }
  PacketBuilder b(kHash);
  size_t added = q.Fill(&b, 4);
  std::string pkt = std::move(b).Finish();
  EXPECT_LE(pkt.size(), kMaxPacketBytes);
  EXPECT_GT(added, 25u);
  EXPECT_GT(pkt.size(), kMaxPacketBytes - 60);
}

}  // namespace
}  // namespace oklog::gossip
