// Shedding decisions: why an ingester would shed (a stalled backlog, a nearly full disk), and
// that never more than a minority of the live ingesters shed, the places going by name.
#include <gtest/gtest.h>

#include "segments/ingest/shedding.h"

namespace oklog {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

IngestLog::Backlog Waiting(uint64_t oldest_ms, std::chrono::steady_clock::time_point last_commit) {
  IngestLog::Backlog b;
  b.segments = 2;
  b.bytes = 5000;
  b.oldest_unix_ms = oldest_ms;
  b.last_commit = last_commit;
  return b;
}

TEST(ShedReasonTest, AStalledBacklogOrANearlyFullDiskIsAReasonAndNothingElse) {
  const auto now = std::chrono::steady_clock::now();
  const uint64_t now_ms = 1'000'000'000;
  const milliseconds after = seconds(30);
  // Stalled: the oldest segment waited 31 s and nothing was committed for 31 s.
  std::string r = ShedReason(Waiting(now_ms - 31000, now - seconds(31)), now_ms, now, after, 1ull << 40, 100 << 20);
  EXPECT_EQ(r, "the stores consumed nothing for 31s while 5000 bytes in 2 segment(s) wait");
  // Old data, but the stores commit (slowly): no reason.
  EXPECT_EQ(ShedReason(Waiting(now_ms - 60000, now - seconds(1)), now_ms, now, after, 1ull << 40, 100 << 20), "");
  // No commit for long, but the data is fresh (the stores were idle, nothing waited): no reason.
  EXPECT_EQ(ShedReason(Waiting(now_ms - 1000, now - seconds(300)), now_ms, now, after, 1ull << 40, 100 << 20), "");
  // Nothing waits.
  EXPECT_EQ(ShedReason(IngestLog::Backlog{0, 0, 0, now - seconds(300)}, now_ms, now, after, 1ull << 40, 100 << 20), "");
  // The backlog rule off.
  EXPECT_EQ(ShedReason(Waiting(now_ms - 31000, now - seconds(31)), now_ms, now, milliseconds(0), 1ull << 40, 100 << 20), "");
  // Below twice the floor: nearly full, whatever the backlog.
  r = ShedReason(IngestLog::Backlog{}, now_ms, now, after, 150 << 20, 100 << 20);
  EXPECT_EQ(r, "ingest disk nearly full: " + std::to_string(150 << 20) +
                   " bytes free, below twice -ingest.min-free-bytes " + std::to_string(100 << 20));
  EXPECT_EQ(ShedReason(IngestLog::Backlog{}, now_ms, now, after, 200 << 20, 100 << 20), "");
  // Once shedding for the disk: until twice the floor plus a tenth of it is free.
  EXPECT_NE(ShedReason(IngestLog::Backlog{}, now_ms, now, after, 205 << 20, 100 << 20, true), "");
  EXPECT_EQ(ShedReason(IngestLog::Backlog{}, now_ms, now, after, 210 << 20, 100 << 20, true), "");
  EXPECT_EQ(ShedReason(IngestLog::Backlog{}, now_ms, now, after, 0, 0), "") << "floor 0: the disk rule is off";
}

TEST(DecideSheddingTest, ALoneIngesterNeverShedsAndWithoutAReasonNobodyDoes) {
  EXPECT_FALSE(DecideShedding("a", true, false, {}));
  EXPECT_FALSE(DecideShedding("a", true, false, {{"a", false}}));
  EXPECT_FALSE(DecideShedding("a", true, true, {{"a", true}}));
  EXPECT_FALSE(DecideShedding("a", false, false, {{"a", false}, {"b", false}, {"c", false}}));
  // Two ingesters: a minority of two is zero.
  EXPECT_FALSE(DecideShedding("a", true, false, {{"a", false}, {"b", false}}));
}

TEST(DecideSheddingTest, AtMostAMinorityShedsAndASimultaneousStartIsSettledByName) {
  const std::vector<ShedPeer> none = {{"a", false}, {"b", false}, {"c", false}};
  EXPECT_TRUE(DecideShedding("b", true, false, none));
  // b sheds: nobody else may start, a lower name included.
  const std::vector<ShedPeer> b_sheds = {{"a", false}, {"b", true}, {"c", false}};
  EXPECT_FALSE(DecideShedding("a", true, false, b_sheds));
  EXPECT_FALSE(DecideShedding("c", true, false, b_sheds));
  EXPECT_TRUE(DecideShedding("b", true, true, b_sheds));
  // b and c started in the same round: c (ranked after b) stops, b goes on.
  const std::vector<ShedPeer> both = {{"a", false}, {"b", true}, {"c", true}};
  EXPECT_FALSE(DecideShedding("c", true, true, both));
  EXPECT_TRUE(DecideShedding("b", true, true, both));
  // Five ingesters: two may shed.
  const std::vector<ShedPeer> five = {{"a", true}, {"b", false}, {"c", false}, {"d", true}, {"e", false}};
  EXPECT_FALSE(DecideShedding("b", true, false, five));
  EXPECT_TRUE(DecideShedding("d", true, true, five));
  EXPECT_TRUE(DecideShedding("b", true, false, {{"a", true}, {"b", false}, {"c", false}, {"d", false}, {"e", false}}));
  // A name listed twice is one ingester.
  EXPECT_FALSE(DecideShedding("a", true, false, {{"a", false}, {"b", false}, {"b", false}}));
}

}  // namespace
}  // namespace oklog
