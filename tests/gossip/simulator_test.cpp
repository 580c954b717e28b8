// Whole-cluster scenarios on the deterministic simulator (virtual time; each test runs in well
// under a second of real time). Seeds are fixed, so a failure replays exactly.
#include "gossip/sim/simulator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

namespace oklog::gossip::sim {
namespace {

using std::chrono::seconds;

std::vector<NodeName> StartCluster(Simulator& s, int n, bool join_all_at_once = true) {
  std::vector<NodeName> names;
  for (int i = 0; i < n; ++i) names.push_back(s.AddNode());
  for (int i = 1; i < n; ++i) {
    s.Join(names[i], {names[0]});
    if (!join_all_at_once) s.RunFor(Duration(100));
  }
  return names;
}

TEST(SimulatorTest, FiftyNodesJoiningThroughOneSeedConverge) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    Simulator s({.seed = seed});
    StartCluster(s, 50);
    Instant start = s.now();
    ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(2))) << "seed " << seed;
    EXPECT_LE(s.now() - start, seconds(2));
  }
}

TEST(SimulatorTest, CrashIsSeenDeadByEverySurvivor) {
  Simulator s({.seed = 7});
  auto names = StartCluster(s, 20);
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(5)));
  s.RunFor(seconds(5));
  s.Crash(names[5]);
  Instant crash = s.now();
  ASSERT_TRUE(s.RunUntil([&] { return s.AllSee(names[5], MemberState::kDead); }, seconds(30)));
  EXPECT_LE(s.now() - crash, seconds(12));
  EXPECT_EQ(s.false_deaths(), 0u);
}

TEST(SimulatorTest, TenPercentLossGivesNoFalsePositive) {
  Simulator s({.seed = 11, .loss = 0.10});
  StartCluster(s, 20);
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(10)));
  s.RunFor(seconds(120));
  EXPECT_EQ(s.false_deaths(), 0u);
  EXPECT_TRUE(s.Converged());
}

TEST(SimulatorTest, TenPercentLossWithoutStreamFallbackGivesNoFalseDeath) {
  Simulator s({.seed = 12, .loss = 0.10, .tweak = [](Config& c) { c.tcp_fallback_ping = false; }});
  StartCluster(s, 20);
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(10)));
  s.RunFor(seconds(120));
  EXPECT_EQ(s.false_deaths(), 0u);
}

TEST(SimulatorTest, StarvedNodeIsNotDeclaredDeadAndDeclaresNobodyDead) {
  Simulator s({.seed = 13});
  auto names = StartCluster(s, 10);
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(5)));
  // Stall for 3 s every 10 s, for two minutes: shorter than the suspicion timeout, so
  // Lifeguard says the node must survive, and its own late timers must not kill anyone.
  for (int i = 0; i < 12; ++i) {
    s.Stall(names[3], seconds(3));
    s.RunFor(seconds(10));
  }
  EXPECT_EQ(s.false_deaths(), 0u);
  EXPECT_TRUE(s.Converged());
}

TEST(SimulatorTest, PartitionOfSixtySecondsHealsIntoOneView) {
  Simulator s({.seed = 17});
  auto names = StartCluster(s, 20);
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(5)));
  std::vector<NodeName> a(names.begin(), names.begin() + 10), b(names.begin() + 10, names.end());
  s.Partition({a, b});
  s.RunFor(seconds(60));
  EXPECT_TRUE(s.AllSee(names[15], MemberState::kDead) || s.View(names[0], names[15]) == MemberState::kDead);
  s.Heal();
  Instant healed = s.now();
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(60)));
  RecordProperty("heal_ms", static_cast<int>((s.now() - healed).count()));
}

TEST(SimulatorTest, GracefulLeaveIsLeftEverywhere) {
  Simulator s({.seed = 19});
  auto names = StartCluster(s, 10);
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(5)));
  s.Leave(names[4]);
  ASSERT_TRUE(s.RunUntil([&] { return s.Get(names[4])->LeaveComplete(); }, seconds(5)));
  s.Crash(names[4]);  // the process exits once the leave went out
  ASSERT_TRUE(s.RunUntil([&] { return s.AllSee(names[4], MemberState::kLeft); }, seconds(5)));
  s.RunFor(seconds(30));
  EXPECT_TRUE(s.AllSee(names[4], MemberState::kLeft));
}

TEST(SimulatorTest, MetadataUpdateReachesEveryone) {
  Simulator s({.seed = 23});
  auto names = StartCluster(s, 30);
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(5)));
  s.UpdateMeta(names[7], "roles=store");
  ASSERT_TRUE(s.RunUntil(
      [&] {
        for (const NodeName& n : s.Running()) {
          const MemberInfo* i = s.Get(n)->Find(names[7]);
          if (!i || i->meta != "roles=store") return false;
        }
        return true;
      },
      seconds(5)));
}

TEST(SimulatorTest, RestartedNodeWithSameNameRejoinsAtLowIncarnation) {
  Simulator s({.seed = 29});
  auto names = StartCluster(s, 10);
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(5)));
  // Push n6's incarnation up, then kill it and let everybody declare it dead.
  for (int i = 0; i < 5; ++i) s.UpdateMeta(names[6], "v" + std::to_string(i));
  s.Crash(names[6]);
  ASSERT_TRUE(s.RunUntil([&] { return s.AllSee(names[6], MemberState::kDead); }, seconds(40)));
  s.Restart(names[6], /*incarnation=*/1, {names[0]});
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(5)));
}

TEST(SimulatorTest, IsolatedNodeKeepsRetryingItsSeed) {
  Simulator s({.seed = 31});
  auto a = s.AddNode();
  auto b = s.AddNode();
  s.Crash(a);  // the seed is down when b starts
  s.Join(b, {a});
  s.RunFor(seconds(20));
  s.Restart(a, 1, {});
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(40)));
}

TEST(SimulatorTest, SameSeedSameRun) {
  auto run = [] {
    Simulator s({.seed = 99, .loss = 0.05});
    StartCluster(s, 15);
    s.RunFor(seconds(20));
    return s.TotalTraffic().packet_bytes_sent;
  };
  EXPECT_EQ(run(), run());
}

// A forger outside the cluster sends every node an alive about n5 at the top incarnation with
// its own address, and then one just ahead of n5's (within the step) but elsewhere, and a dead
// about n5 at the top. Nobody believes any of it: n5 stays alive everywhere, at its address,
// with an incarnation that did not wrap.
TEST(SimulatorTest, ForgedNewsAboutANodeAtTheTopIncarnationChangesNoView) {
  Simulator s({.seed = 37});
  auto names = StartCluster(s, 8);
  ASSERT_TRUE(s.RunUntil([&] { return s.Converged(); }, seconds(5)));
  s.RunFor(seconds(2));
  const NodeName victim = names[5];
  const std::string addr = s.AddressOf(victim);
  const Incarnation before = s.Get(victim)->self().incarnation;
  const std::string forger = "203.0.113.66:7659";
  const Incarnation top = std::numeric_limits<Incarnation>::max();
  auto packet = [](const Message& m) {
    PacketBuilder b(ClusterHash("oklog"));
    EXPECT_TRUE(b.TryAdd(EncodeMessage(m)));
    return std::move(b).Finish();
  };
  for (const NodeName& n : names) {
    s.InjectPacket(n, forger, packet(Alive{top, victim, forger, "stolen"}));
    s.InjectPacket(n, forger, packet(Alive{before + 1000, victim, forger, "stolen"}));
    s.InjectPacket(n, forger, packet(Dead{top, victim, names[1]}));
  }
  s.RunFor(seconds(30));
  EXPECT_TRUE(s.Converged());
  EXPECT_EQ(s.false_deaths(), 0u);
  const Incarnation now_at = s.Get(victim)->self().incarnation;
  EXPECT_GE(now_at, before);
  EXPECT_LE(now_at, before + 1001);  // at most one refutation of the in-step forgery
  for (const NodeName& n : names) {
    const MemberInfo* i = s.Get(n)->Find(victim);
    ASSERT_NE(i, nullptr) << n;
    EXPECT_EQ(i->state, MemberState::kAlive) << n;
    EXPECT_EQ(i->addr, addr) << n;
    EXPECT_NE(i->meta, "stolen") << n;
    EXPECT_LE(i->incarnation, now_at) << n;
  }
}

}  // namespace
}  // namespace oklog::gossip::sim
