#include "gossip/config.h"

#include <gtest/gtest.h>

namespace oklog::gossip {
namespace {

// Figures from reference/swim.md §1.3 (memberlist's formulas for its shipped configs).
TEST(ConfigTest, LanDerivedValuesMatchMemberlist) {
  Config c = Config::Lan();
  EXPECT_EQ(SuspicionMinTimeout(c, 5).count(), 4000);
  EXPECT_EQ(SuspicionMaxTimeout(c, 5).count(), 24000);
  EXPECT_NEAR(SuspicionMinTimeout(c, 20).count(), 5204, 2);
  EXPECT_NEAR(SuspicionMinTimeout(c, 50).count(), 6796, 2);
  EXPECT_EQ(SuspicionMinTimeout(c, 1000).count(), 12000);
  EXPECT_EQ(SuspicionConfirmationsNeeded(c, 5), 2);
  EXPECT_EQ(RetransmitLimit(c, 5), 4);
  EXPECT_EQ(RetransmitLimit(c, 20), 8);
  EXPECT_EQ(RetransmitLimit(c, 100), 12);
  EXPECT_EQ(RetransmitLimit(c, 1000), 16);
  EXPECT_EQ(PushPullInterval(c, 5).count(), 30000);
  EXPECT_EQ(PushPullInterval(c, 50).count(), 60000);
  EXPECT_EQ(PushPullInterval(c, 100).count(), 90000);
  EXPECT_EQ(PushPullInterval(c, 1000).count(), 180000);
}

TEST(ConfigTest, LocalDerivedValuesMatchMemberlist) {
  Config c = Config::Local();
  EXPECT_EQ(SuspicionMinTimeout(c, 5).count(), 3000);
  EXPECT_EQ(SuspicionMaxTimeout(c, 5).count(), 18000);
  EXPECT_EQ(SuspicionConfirmationsNeeded(c, 5), 1);
  EXPECT_EQ(RetransmitLimit(c, 5), 2);
  EXPECT_EQ(RetransmitLimit(c, 20), 4);
  EXPECT_EQ(PushPullInterval(c, 50).count(), 30000);
}

TEST(ConfigTest, SuspicionTimeoutDecaysWithConfirmations) {
  Duration min(4000), max(24000);
  EXPECT_EQ(SuspicionTimeout(min, max, 2, 0), max);
  Duration one = SuspicionTimeout(min, max, 2, 1);
  EXPECT_LT(one, max);
  EXPECT_GT(one, min);
  EXPECT_EQ(SuspicionTimeout(min, max, 2, 2), min);
  EXPECT_EQ(SuspicionTimeout(min, max, 0, 0), min);
  EXPECT_EQ(SuspicionConfirmationsNeeded(Config::Lan(), 3), 0);  // N - 2 < K
}

}  // namespace
}  // namespace oklog::gossip
