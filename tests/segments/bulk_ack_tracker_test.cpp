// BulkAckTracker alone, no sockets or files: which connections get which ack and when, resends
// of held and recently committed ids, the unacked cap, commits that overtake their write, and
// failed writes never acknowledged.
#include "segments/ingest/bulk_ack_tracker.h"

#include <gtest/gtest.h>

namespace oklog {
namespace {

using Arrival = BulkAckTracker::Arrival;
using Conns = std::vector<BulkAckTracker::ConnId>;

Ulid Id(uint64_t n) { return Ulid::FromParts(1000 + n, 0, 0); }

TEST(BulkAckTrackerTest, AStoredSegmentIsAcknowledgedToItsSenderWhenCommitted) {
  BulkAckTracker t;
  ASSERT_EQ(t.Received(1, Id(1)), Arrival::kNew);
  t.Storing(1, Id(1), "SEG1");
  EXPECT_EQ(t.unacked(1), 1u);
  EXPECT_EQ(t.held(), 1u);
  EXPECT_FALSE(t.Written(Id(1)).has_value());  // not committed yet: nothing to send
  EXPECT_FALSE(t.Committed("OTHER").has_value()) << "a file that is no bulk segment acknowledges nothing";
  auto acks = t.Committed("SEG1");
  ASSERT_TRUE(acks.has_value());
  EXPECT_EQ(acks->id, Id(1));
  EXPECT_EQ(acks->conns, Conns{1});
  EXPECT_EQ(t.unacked(1), 0u);
  EXPECT_EQ(t.held(), 0u);
  EXPECT_FALSE(t.Committed("SEG1").has_value()) << "a second commit of the same file acknowledges nothing";
}

TEST(BulkAckTrackerTest, AResendOfAHeldSegmentJoinsItsWaitersOncePerConnection) {
  BulkAckTracker t;
  ASSERT_EQ(t.Received(1, Id(1)), Arrival::kNew);
  t.Storing(1, Id(1), "SEG1");
  EXPECT_EQ(t.Received(2, Id(1)), Arrival::kHeld);  // still being written: no second copy
  EXPECT_EQ(t.Received(2, Id(1)), Arrival::kHeld);
  EXPECT_EQ(t.Received(1, Id(1)), Arrival::kHeld);
  EXPECT_EQ(t.unacked(1), 1u);
  EXPECT_EQ(t.unacked(2), 1u) << "a connection counts an id once, however often it sends it";
  ASSERT_FALSE(t.Written(Id(1)).has_value());
  auto acks = t.Committed("SEG1");
  ASSERT_TRUE(acks.has_value());
  EXPECT_EQ(acks->conns, (Conns{1, 2}));
}

TEST(BulkAckTrackerTest, AResendAfterTheCommitIsAcknowledgedAtOnceUntilItAgesOut) {
  BulkAckTracker t(64, /*recent_commits=*/2);
  for (uint64_t i = 1; i <= 3; ++i) {
    ASSERT_EQ(t.Received(1, Id(i)), Arrival::kNew);
    t.Storing(1, Id(i), "SEG" + std::to_string(i));
    (void)t.Written(Id(i));
    ASSERT_TRUE(t.Committed("SEG" + std::to_string(i)).has_value());
  }
  EXPECT_EQ(t.Received(9, Id(3)), Arrival::kCommitted);
  EXPECT_EQ(t.Received(9, Id(2)), Arrival::kCommitted);
  EXPECT_EQ(t.Received(9, Id(1)), Arrival::kNew) << "only the last 2 commits are remembered";
  EXPECT_EQ(t.unacked(9), 0u) << "kCommitted and kNew record nothing";
}

TEST(BulkAckTrackerTest, AConnectionIsAtTheCapWithMaxUnackedAndLeavesItOnAnAck) {
  BulkAckTracker t(/*max_unacked_per_conn=*/3);
  for (uint64_t i = 1; i <= 3; ++i) {
    EXPECT_FALSE(t.AtCap(1));
    ASSERT_EQ(t.Received(1, Id(i)), Arrival::kNew);
    t.Storing(1, Id(i), "SEG" + std::to_string(i));
    (void)t.Written(Id(i));
  }
  EXPECT_TRUE(t.AtCap(1));
  EXPECT_FALSE(t.AtCap(2));
  ASSERT_TRUE(t.Committed("SEG2").has_value());
  EXPECT_FALSE(t.AtCap(1));
  EXPECT_EQ(t.unacked(1), 2u);
}

TEST(BulkAckTrackerTest, ACommitThatOvertakesItsWriteIsAcknowledgedWhenTheWriteEnds) {
  BulkAckTracker t;
  ASSERT_EQ(t.Received(1, Id(1)), Arrival::kNew);
  t.Storing(1, Id(1), "SEG1");
  EXPECT_FALSE(t.Committed("SEG1").has_value()) << "the write has not reported back: no ack yet";
  EXPECT_EQ(t.unacked(1), 1u);
  auto acks = t.Written(Id(1));
  ASSERT_TRUE(acks.has_value());
  EXPECT_EQ(acks->conns, Conns{1});
  EXPECT_EQ(t.Received(2, Id(1)), Arrival::kCommitted);
}

TEST(BulkAckTrackerTest, AFailedWriteIsNeverAcknowledgedAndItsWaitersAreTold) {
  BulkAckTracker t;
  ASSERT_EQ(t.Received(1, Id(1)), Arrival::kNew);
  t.Storing(1, Id(1), "SEG1");
  ASSERT_EQ(t.Received(2, Id(1)), Arrival::kHeld);
  // The store committed what the failed write left in the file before the write reported back.
  EXPECT_FALSE(t.Committed("SEG1").has_value());
  EXPECT_EQ(t.Failed(Id(1)), (Conns{1, 2}));
  EXPECT_EQ(t.unacked(1), 0u);
  EXPECT_EQ(t.unacked(2), 0u);
  EXPECT_EQ(t.held(), 0u);
  EXPECT_FALSE(t.Written(Id(1)).has_value());
  // Not remembered as committed: the resend is stored again, and acknowledged when that copy is.
  ASSERT_EQ(t.Received(1, Id(1)), Arrival::kNew);
  t.Storing(1, Id(1), "SEG1b");
  EXPECT_FALSE(t.Committed("SEG1").has_value()) << "the failed copy's file name no longer maps to the id";
  (void)t.Written(Id(1));
  auto acks = t.Committed("SEG1b");
  ASSERT_TRUE(acks.has_value());
  EXPECT_EQ(acks->conns, Conns{1});
}

TEST(BulkAckTrackerTest, AClosedConnectionWaitsForNothingButItsSegmentStillCommits) {
  BulkAckTracker t;
  ASSERT_EQ(t.Received(1, Id(1)), Arrival::kNew);
  t.Storing(1, Id(1), "SEG1");
  (void)t.Written(Id(1));
  t.ForgetConn(1);
  EXPECT_EQ(t.unacked(1), 0u);
  EXPECT_EQ(t.held(), 1u);
  auto acks = t.Committed("SEG1");
  ASSERT_TRUE(acks.has_value());
  EXPECT_TRUE(acks->conns.empty());
  EXPECT_EQ(t.Received(2, Id(1)), Arrival::kCommitted) << "a resend on another connection gets its ack at once";
}

}  // namespace
}  // namespace oklog
