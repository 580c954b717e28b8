// The rules of Membership, one by one, driven by hand-made packets and a hand-moved clock.
#include "gossip/membership.h"

#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <set>

namespace oklog::gossip {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class MembershipTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(Config::Lan()); }

  void Make(Config c, Incarnation initial_incarnation = 10) {
    c.name = "me";
    c.advertise_addr = "10.0.0.1:7659";
    c.cluster_name = "test";
    c.random_seed = 3;
    c.initial_incarnation = initial_incarnation;
    auto m = Membership::Create(c, "meta", now_);
    ASSERT_TRUE(m.ok());
    m_ = std::move(m).value();
    hash_ = ClusterHash("test");
  }

  void Send(const std::vector<Message>& msgs, const std::string& from = "10.0.0.9:7659") {
    PacketBuilder b(hash_);
    for (const Message& m : msgs) EXPECT_TRUE(b.TryAdd(EncodeMessage(m)));
    m_->OnPacket(from, std::move(b).Finish(), now_);
  }
  void AddPeer(const std::string& name, Incarnation inc = 1) {
    Send({Alive{inc, name, "10.0.1." + std::to_string(name.size() + name.back()) + ":7659", ""}});
  }
  void Advance(Duration d) {
    Instant end = now_ + d;
    while (true) {
      Instant next = m_->NextDeadline();
      if (next > end) break;
      now_ = std::max(now_, next);
      m_->OnTimer(now_);
      Collect();
    }
    now_ = end;
  }
  // Peers answer our pings unless listed in silent_ (or all_silent_).
  void Collect() {
    Outbox o = m_->TakeOutbox();
    std::vector<uint32_t> acks;
    for (auto& p : o.packets) {
      auto d = DecodePacket(p.bytes, hash_);
      ASSERT_TRUE(d.ok());
      for (auto& msg : d->messages) {
        if (auto* ping = std::get_if<Ping>(&msg); ping && !all_silent_ && !silent_.count(ping->target))
          acks.push_back(ping->seq);
        sent_.push_back({p.to, msg});
      }
    }
    for (auto& s : o.streams) streams_.push_back(s);
    for (auto& e : o.events) events_.push_back(e);
    if (!acks.empty()) {
      std::vector<Message> msgs;
      for (uint32_t a : acks) msgs.push_back(Ack{a});
      Send(msgs);
    }
  }
  bool AdvanceUntil(const std::function<bool()>& pred, Duration max) {
    for (Duration t{0}; t < max; t += Duration(10)) {
      if (pred()) return true;
      Advance(Duration(10));
    }
    return pred();
  }
  template <typename T>
  std::vector<std::pair<std::string, T>> Sent() {
    Collect();
    std::vector<std::pair<std::string, T>> out;
    for (auto& [to, m] : sent_)
      if (auto* t = std::get_if<T>(&m)) out.push_back({to, *t});
    return out;
  }
  MemberState StateOf(const std::string& n) { return m_->Find(n)->state; }
  std::string AddrOf(const std::string& n) { return m_->Find(n)->addr; }
  uint64_t Rejected(Rejection r) { return m_->stats().rejected[static_cast<size_t>(r)]; }
  void Clear() {
    Collect();
    sent_.clear();
    streams_.clear();
    events_.clear();
  }

  Instant now_{seconds(100)};
  std::unique_ptr<Membership> m_;
  uint32_t hash_ = 0;
  std::vector<std::pair<std::string, Message>> sent_;
  std::vector<OutPacket> streams_;
  std::vector<MemberEvent> events_;
  std::set<std::string> silent_;
  bool all_silent_ = false;
};

TEST_F(MembershipTest, CreateRejectsOversizeMetadataAndMissingName) {
  Config c = Config::Lan();
  c.name = "x";
  c.advertise_addr = "a:1";
  EXPECT_FALSE(Membership::Create(c, std::string(kMaxMetaBytes + 1, 'm'), now_).ok());
  c.name = "";
  EXPECT_FALSE(Membership::Create(c, "", now_).ok());
  EXPECT_FALSE(m_->UpdateMetadata(std::string(kMaxMetaBytes + 1, 'm'), now_).ok());
}

TEST_F(MembershipTest, AliveAddsMemberAndEmitsJoin) {
  AddPeer("a");
  Collect();
  ASSERT_NE(m_->Find("a"), nullptr);
  EXPECT_EQ(StateOf("a"), MemberState::kAlive);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, MemberEvent::Kind::kJoin);
}

TEST_F(MembershipTest, PingIsAckedToSenderAndMisdirectedPingIsIgnored) {
  Clear();
  Send({Ping{77, "me", "stranger"}}, "10.0.0.5:7659");
  auto acks = Sent<Ack>();
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].first, "10.0.0.5:7659");
  EXPECT_EQ(acks[0].second.seq, 77u);
  Clear();
  Send({Ping{78, "somebody-else", "stranger"}});
  EXPECT_TRUE(Sent<Ack>().empty());
}

TEST_F(MembershipTest, PingFromStrangerTriggersSync) {
  Clear();
  Send({Ping{1, "me", "stranger"}}, "10.0.0.5:7659");
  Collect();
  ASSERT_EQ(streams_.size(), 1u);
  EXPECT_EQ(streams_[0].to, "10.0.0.5:7659");
}

TEST_F(MembershipTest, FailedProbeSendsIndirectPingsAndStreamPingThenSuspects) {
  all_silent_ = true;
  for (auto n : {"a", "b", "c", "d"}) AddPeer(n);
  Clear();
  Advance(milliseconds(1000));  // the first probe starts within one interval
  auto pings = Sent<Ping>();
  ASSERT_EQ(pings.size(), 1u);
  std::string target = pings[0].second.target;
  Advance(milliseconds(600));  // past the ack timeout
  auto reqs = Sent<PingReq>();
  EXPECT_EQ(reqs.size(), 3u);
  for (auto& [to, r] : reqs) EXPECT_EQ(r.target, target);
  bool stream_ping = false;
  for (auto& s : streams_) stream_ping |= std::holds_alternative<Ping>(DecodeStreamMessage(s.bytes).value());
  EXPECT_TRUE(stream_ping);
  ASSERT_TRUE(AdvanceUntil([&] { return m_->stats().probes_failed == 1; }, seconds(1)));
  EXPECT_EQ(StateOf(target), MemberState::kSuspect);
  EXPECT_EQ(m_->awareness(), 3);  // three helpers, no nacks
}

TEST_F(MembershipTest, AckInTimeKeepsTargetAliveAndLowersAwareness) {
  for (auto n : {"a", "b"}) AddPeer(n);
  Clear();
  Advance(milliseconds(1000));
  auto pings = Sent<Ping>();
  ASSERT_EQ(pings.size(), 1u);
  Send({Ack{pings[0].second.seq}});
  Advance(seconds(1));
  EXPECT_EQ(StateOf(pings[0].second.target), MemberState::kAlive);
  EXPECT_EQ(m_->stats().probes_failed, 0u);
}

TEST_F(MembershipTest, NacksReduceTheAwarenessPenalty) {
  all_silent_ = true;
  for (auto n : {"a", "b", "c", "d"}) AddPeer(n);
  Clear();
  ASSERT_TRUE(AdvanceUntil([&] { return m_->stats().indirect_probes == 3; }, seconds(2)));
  auto reqs = Sent<PingReq>();
  ASSERT_EQ(reqs.size(), 3u);
  Send({Nack{reqs[0].second.seq}});
  Send({Nack{reqs[1].second.seq}});
  ASSERT_TRUE(AdvanceUntil([&] { return m_->stats().probes_failed == 1; }, seconds(1)));
  EXPECT_EQ(m_->awareness(), 1);
}

TEST_F(MembershipTest, PingReqIsRelayedAndAnsweredWithAckOrNack) {
  AddPeer("t");
  const std::string t_addr = AddrOf("t");
  Clear();
  Send({PingReq{5, "t", t_addr}}, "10.0.0.3:7659");
  auto pings = Sent<Ping>();
  ASSERT_EQ(pings.size(), 1u);
  EXPECT_EQ(pings[0].first, t_addr);
  Send({Ack{pings[0].second.seq}}, t_addr);
  auto acks = Sent<Ack>();
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].first, "10.0.0.3:7659");
  EXPECT_EQ(acks[0].second.seq, 5u);
  Clear();
  silent_.insert("t");
  Send({PingReq{6, "t", t_addr}}, "10.0.0.3:7659");
  Advance(milliseconds(600));
  auto nacks = Sent<Nack>();
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].second.seq, 6u);
}

TEST_F(MembershipTest, SuspicionWithoutConfirmationsLastsTheMaxTimeout) {
  for (auto n : {"a", "b", "c", "d"}) AddPeer(n);
  Send({Suspect{1, "a", "b"}});
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
  // N = 5: min 4 s, max 24 s, K = 2.
  Advance(seconds(23));
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
  Advance(seconds(2));
  EXPECT_EQ(StateOf("a"), MemberState::kDead);
}

TEST_F(MembershipTest, IndependentConfirmationsShortenSuspicionToMin) {
  for (auto n : {"a", "b", "c", "d"}) AddPeer(n);
  Send({Suspect{1, "a", "b"}});
  Send({Suspect{1, "a", "b"}});  // the accuser again: not a confirmation
  Send({Suspect{1, "a", "c"}});
  Send({Suspect{1, "a", "d"}});
  Advance(milliseconds(3900));
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
  Advance(milliseconds(200));
  EXPECT_EQ(StateOf("a"), MemberState::kDead);
}

TEST_F(MembershipTest, SuspicionAboutSelfIsRefutedWithHigherIncarnation) {
  AddPeer("a");
  Clear();
  Send({Suspect{10, "me", "a"}});
  auto alives = Sent<Alive>();
  EXPECT_EQ(m_->self().incarnation, 11u);
  EXPECT_EQ(m_->stats().refutes, 1u);
  Advance(milliseconds(400));
  bool refuted = false;
  for (auto& [to, a] : Sent<Alive>()) refuted |= a.node == "me" && a.incarnation == 11;
  EXPECT_TRUE(refuted);
  // Stale accusations are ignored.
  Send({Dead{3, "me", "a"}});
  EXPECT_EQ(m_->self().incarnation, 11u);
}

TEST_F(MembershipTest, SuspectIsRefutedByHigherIncarnationAlive) {
  AddPeer("a", 5);
  Send({Suspect{5, "a", "b"}});
  Send({Alive{5, "a", AddrOf("a"), ""}});  // equal: not a refutation
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
  Send({Alive{6, "a", AddrOf("a"), ""}});
  EXPECT_EQ(StateOf("a"), MemberState::kAlive);
}

TEST_F(MembershipTest, StaleAliveCannotResurrectAgainstHigherIncarnationDeath) {
  AddPeer("a", 3);
  AddPeer("b");
  Send({Dead{7, "a", "b"}});  // failure evidence at a higher incarnation than we knew
  EXPECT_EQ(StateOf("a"), MemberState::kDead);
  EXPECT_EQ(m_->Find("a")->incarnation, 7u);
  Send({Alive{4, "a", "x:1", ""}});  // delayed, from before the death
  Send({Alive{7, "a", "x:1", ""}});
  EXPECT_EQ(StateOf("a"), MemberState::kDead);
  Send({Alive{8, "a", "x:1", ""}});  // a genuine refutation
  EXPECT_EQ(StateOf("a"), MemberState::kAlive);
}

TEST_F(MembershipTest, SuspicionRaisesStoredIncarnation) {
  AddPeer("a", 3);
  Send({Suspect{9, "a", "b"}});
  EXPECT_EQ(m_->Find("a")->incarnation, 9u);
  Send({Alive{8, "a", "x:1", ""}});
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
}

TEST_F(MembershipTest, SuspicionAtHigherIncarnationRestartsTheTimer) {
  for (auto n : {"a", "b", "c", "d"}) AddPeer(n);
  Send({Suspect{1, "a", "b"}});
  Advance(seconds(20));  // 4 s left of the 24 s max
  Send({Suspect{2, "a", "c"}});  // we missed a's refutation to 2; this is a new suspicion
  Advance(seconds(10));
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
}

TEST_F(MembershipTest, StaleAccusationIsAnsweredWithOurAlive) {
  AddPeer("a");
  Clear();
  Send({Suspect{3, "me", "a"}}, "10.0.0.44:7659");  // we are at 10
  bool answered = false;
  for (auto& [to, a] : Sent<Alive>()) answered |= to == "10.0.0.44:7659" && a.node == "me" && a.incarnation == 10;
  EXPECT_TRUE(answered);
  EXPECT_EQ(m_->stats().refutes, 0u);
}

TEST_F(MembershipTest, DeadFromTheNodeItselfMeansLeft) {
  AddPeer("a", 2);
  Clear();
  Send({Dead{2, "a", "a"}});
  EXPECT_EQ(StateOf("a"), MemberState::kLeft);
  Collect();
  ASSERT_FALSE(events_.empty());
  EXPECT_EQ(events_.back().kind, MemberEvent::Kind::kLeft);
}

TEST_F(MembershipTest, AccusedHearsTheSuspicionInTheProbe) {
  AddPeer("a");
  Send({Suspect{1, "a", "b"}});
  Clear();
  Advance(milliseconds(1000));
  Collect();
  // The suspect message precedes the ping in the same packet.
  bool seen_suspect = false, ordered = false;
  for (auto& [to, m] : sent_) {
    if (std::holds_alternative<Suspect>(m)) seen_suspect = true;
    if (std::holds_alternative<Ping>(m)) ordered = seen_suspect;
  }
  EXPECT_TRUE(ordered);
}

TEST_F(MembershipTest, PingFromANodeWeHoldDeadCarriesTheVerdict) {
  AddPeer("a", 4);
  AddPeer("b");
  Send({Dead{4, "a", "b"}});
  Clear();
  Send({Ping{1, "me", "a"}});
  auto deads = Sent<Dead>();
  ASSERT_FALSE(deads.empty());
  EXPECT_EQ(deads[0].second.node, "a");
}

TEST_F(MembershipTest, BroadcastsAreRetransmittedAtMostTheLimit) {
  AddPeer("a");
  AddPeer("b");
  Clear();
  Advance(seconds(10));
  int count = 0;
  for (auto& [to, a] : Sent<Alive>()) count += a.node == "a";
  EXPECT_EQ(count, RetransmitLimit(m_->config(), 3));
}

TEST_F(MembershipTest, LeaveBroadcastsDeadFromSelfAndCompletes) {
  AddPeer("a");
  Clear();
  m_->Leave(now_);
  EXPECT_FALSE(m_->LeaveComplete());
  Advance(seconds(3));
  bool left = false;
  for (auto& [to, d] : Sent<Dead>()) left |= d.node == "me" && d.from == "me";
  EXPECT_TRUE(left);
  EXPECT_TRUE(m_->LeaveComplete());
  EXPECT_EQ(m_->self().state, MemberState::kLeft);
}

// The leave goes to every live member at once, not only to the k random gossip targets (which
// may be recently dead members): a member that misses it would record `dead`, not `left`.
TEST_F(MembershipTest, LeaveIsSentDirectlyToEveryLiveMember) {
  const std::vector<std::string> peers = {"a", "bb", "ccc", "dddd", "eeeee", "ffffff", "ggggggg"};
  for (const auto& p : peers) AddPeer(p);
  Clear();
  m_->Leave(now_);  // no time passes: only what Leave itself sends
  std::set<std::string> told;
  for (auto& [to, d] : Sent<Dead>())
    if (d.node == "me" && d.from == "me") told.insert(to);
  EXPECT_EQ(told.size(), peers.size());  // more than gossip_nodes (3)
  EXPECT_GT(peers.size(), static_cast<size_t>(m_->config().gossip_nodes));
}

TEST_F(MembershipTest, JoinRetriesSeedsWithBackoffUntilOneAnswers) {
  Clear();
  m_->Join({"seed:7659", "10.0.0.1:7659"}, now_);  // our own address is skipped
  Collect();
  ASSERT_EQ(streams_.size(), 1u);
  EXPECT_EQ(streams_[0].to, "seed:7659");
  Advance(seconds(8));  // 0.5 + 1 + 2 + 4
  EXPECT_EQ(streams_.size(), 5u);
  EXPECT_TRUE(m_->joining());
  // The seed answers with its table.
  Sync reply{Sync::kReply, 0, "seed", std::vector<SyncState>{{"seed", "seed:7659", 1, MemberState::kAlive, ""}}};
  EXPECT_EQ(m_->OnStream("seed:7659", EncodeMessage(reply), now_), "");
  EXPECT_FALSE(m_->joining());
  EXPECT_EQ(StateOf("seed"), MemberState::kAlive);
}

TEST_F(MembershipTest, AloneNodeRejoinsItsSeeds) {
  m_->Join({"seed:7659"}, now_);
  Sync reply{Sync::kReply, 0, "seed", std::vector<SyncState>{{"seed", "seed:7659", 1, MemberState::kAlive, ""}}};
  (void)m_->OnStream("seed:7659", EncodeMessage(reply), now_);
  ASSERT_FALSE(m_->joining());
  Send({Dead{1, "seed", "seed-peer"}});  // from a non-member: a suspicion, which times out
  EXPECT_EQ(StateOf("seed"), MemberState::kSuspect);
  silent_.insert("seed");
  ASSERT_TRUE(AdvanceUntil([&] { return StateOf("seed") == MemberState::kDead; }, seconds(30)));
  Advance(seconds(1));
  EXPECT_TRUE(m_->joining());
}

TEST_F(MembershipTest, SyncWithEqualDigestsExchangesNoState) {
  AddPeer("a");
  std::string reply = m_->OnStream("a", EncodeMessage(Sync{0, m_->Digest(), "a", {}}), now_);
  auto d = DecodeStreamMessage(reply);
  ASSERT_TRUE(d.ok());
  const Sync& s = std::get<Sync>(d.value());
  EXPECT_FALSE(s.states);
  std::string reply2 = m_->OnStream("a", EncodeMessage(Sync{0, m_->Digest() + 1, "a", {}}), now_);
  auto d2 = DecodeStreamMessage(reply2);
  ASSERT_TRUE(d2.ok());
  const Sync& s2 = std::get<Sync>(d2.value());
  ASSERT_TRUE(s2.states);
  EXPECT_TRUE(s2.flags & Sync::kWant);
}

TEST_F(MembershipTest, SyncTreatsRemoteDeadAsSuspicionAndSelfDeadAsRefutation) {
  AddPeer("a", 2);
  Sync push{Sync::kJoin, 0, "b",
            std::vector<SyncState>{{"a", "x:1", 2, MemberState::kDead, ""}, {"me", "y:1", 10, MemberState::kDead, ""}}};
  (void)m_->OnStream("b", EncodeMessage(push), now_);
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
  EXPECT_EQ(m_->self().incarnation, 11u);
}

TEST_F(MembershipTest, MalformedInputIsCountedNotFatal) {
  m_->OnPacket("x", "garbage", now_);
  EXPECT_EQ(m_->OnStream("x", "\xc1", now_), "");
  EXPECT_EQ(m_->stats().packets_malformed, 2u);
}

TEST_F(MembershipTest, UpdateMetadataBumpsIncarnationAndBroadcasts) {
  AddPeer("a");
  Clear();
  ASSERT_TRUE(m_->UpdateMetadata("new", now_).ok());
  EXPECT_EQ(m_->self().incarnation, 11u);
  Advance(milliseconds(400));
  bool seen = false;
  for (auto& [to, a] : Sent<Alive>()) seen |= a.node == "me" && a.meta == "new";
  EXPECT_TRUE(seen);
}


// ---- Hardening: incarnation bounds, address conflicts, verdicts and ping_req from strangers ----

constexpr Incarnation kTop = std::numeric_limits<Incarnation>::max();

TEST_F(MembershipTest, CreateRejectsAnInitialIncarnationAtTheMaximum) {
  Config c = Config::Lan();
  c.name = "x";
  c.advertise_addr = "a:1";
  c.initial_incarnation = kMaxIncarnation;
  EXPECT_FALSE(Membership::Create(c, "", now_).ok());
  c.initial_incarnation = kMaxIncarnation - 1;
  EXPECT_TRUE(Membership::Create(c, "", now_).ok());
}

TEST_F(MembershipTest, DeadAboutUsAtTheTopIsDroppedAndWeStayAlive) {
  AddPeer("a");
  Clear();
  Send({Dead{kTop, "me", "a"}});
  Send({Suspect{kTop, "me", "a"}});
  Send({Dead{kMaxIncarnation, "me", "a"}});  // an accusation at the ceiling could not be refuted
  EXPECT_EQ(m_->self().incarnation, 10u);
  EXPECT_EQ(m_->self().state, MemberState::kAlive);
  EXPECT_EQ(m_->stats().refutes, 0u);
  EXPECT_EQ(Rejected(Rejection::kIncarnationOutOfRange), 3u);
}

TEST_F(MembershipTest, AccusationAboutUsBeyondTheStepIsDroppedWithinItRefuted) {
  AddPeer("a");
  Send({Dead{10 + kMaxIncarnationStep + 1, "me", "a"}});
  EXPECT_EQ(m_->self().incarnation, 10u);
  EXPECT_EQ(Rejected(Rejection::kIncarnationOutOfRange), 1u);
  Send({Dead{10 + kMaxIncarnationStep, "me", "a"}});
  EXPECT_EQ(m_->self().incarnation, 10 + kMaxIncarnationStep + 1);
  EXPECT_EQ(m_->stats().refutes, 1u);
}

TEST_F(MembershipTest, AliveAboutUsAtTheTopWithAnotherAddressIsDropped) {
  AddPeer("a");
  Clear();
  Send({Alive{kTop, "me", "203.0.113.66:7659", "evil"}});
  EXPECT_EQ(m_->self().incarnation, 10u);
  EXPECT_EQ(m_->self().addr, "10.0.0.1:7659");
  EXPECT_EQ(m_->stats().refutes, 0u);
  EXPECT_EQ(Rejected(Rejection::kIncarnationOutOfRange), 1u);
}

TEST_F(MembershipTest, RefuteAtTheMaximumSaturatesAndNeverWraps) {
  Make(Config::Lan(), kMaxIncarnation - 1);
  AddPeer("a");
  Send({Suspect{kMaxIncarnation - 1, "me", "a"}});  // the highest refutable accusation
  EXPECT_EQ(m_->self().incarnation, kMaxIncarnation);
  EXPECT_EQ(m_->stats().incarnation_saturated, 0u);
  // An alive claim at the ceiling cannot be outranked: we stay there and say so, never wrap.
  Send({Alive{kMaxIncarnation, "me", "203.0.113.66:7659", ""}});
  EXPECT_EQ(m_->self().incarnation, kMaxIncarnation);
  EXPECT_EQ(m_->self().addr, "10.0.0.1:7659");
  EXPECT_EQ(m_->stats().incarnation_saturated, 1u);
  // Lower accusations are stale and answered with our alive at the ceiling.
  Clear();
  Send({Dead{kMaxIncarnation - 1, "me", "a"}}, "10.0.0.44:7659");
  bool answered = false;
  for (auto& [to, a] : Sent<Alive>()) answered |= a.node == "me" && a.incarnation == kMaxIncarnation;
  EXPECT_TRUE(answered);
  EXPECT_EQ(m_->self().state, MemberState::kAlive);
  // Metadata can no longer change (it would need a higher incarnation).
  Status st = m_->UpdateMetadata("new", now_);
  EXPECT_EQ(st.code(), Code::kResourceExhausted);
  EXPECT_EQ(m_->self().incarnation, kMaxIncarnation);
  EXPECT_EQ(m_->self().meta, "meta");
}

TEST_F(MembershipTest, NewsFarAheadOfAKnownMemberIsDropped) {
  AddPeer("a", 5);
  Send({Alive{5 + kMaxIncarnationStep + 1, "a", AddrOf("a"), "x"}});
  Send({Dead{kTop, "a", "me"}});
  EXPECT_EQ(m_->Find("a")->incarnation, 5u);
  EXPECT_EQ(StateOf("a"), MemberState::kAlive);
  EXPECT_EQ(Rejected(Rejection::kIncarnationOutOfRange), 2u);
  Send({Alive{5 + kMaxIncarnationStep, "a", AddrOf("a"), "x"}});
  EXPECT_EQ(m_->Find("a")->incarnation, 5 + kMaxIncarnationStep);
  // An unknown node above the ceiling is not learnt at all.
  Send({Alive{kTop, "b", "10.0.2.2:7659", ""}});
  EXPECT_EQ(m_->Find("b"), nullptr);
}

TEST_F(MembershipTest, SyncStatesBeyondTheBoundsAreDropped) {
  AddPeer("a", 2);
  Sync push{Sync::kJoin, 0, "a",
            std::vector<SyncState>{{"a", AddrOf("a"), kTop, MemberState::kDead, ""},
                                   {"me", "y:1", kTop, MemberState::kDead, ""},
                                   {"z", "10.0.3.3:7659", kTop, MemberState::kAlive, ""}}};
  (void)m_->OnStream("10.0.0.9:7659", EncodeMessage(push), now_);
  EXPECT_EQ(StateOf("a"), MemberState::kAlive);
  EXPECT_EQ(m_->self().incarnation, 10u);
  EXPECT_EQ(m_->Find("z"), nullptr);
  EXPECT_EQ(Rejected(Rejection::kIncarnationOutOfRange), 3u);
}

TEST_F(MembershipTest, AddressChangeForALiveOrSuspectMemberIsIgnored) {
  AddPeer("a", 5);
  const std::string addr = AddrOf("a");
  Clear();
  Send({Alive{6, "a", "203.0.113.66:7659", "stolen"}});
  EXPECT_EQ(AddrOf("a"), addr);
  EXPECT_EQ(m_->Find("a")->incarnation, 5u);
  EXPECT_EQ(m_->Find("a")->meta, "");
  Send({Suspect{5, "a", "me"}});
  Send({Alive{7, "a", "203.0.113.66:7659", "stolen"}});  // a suspect keeps its address too
  EXPECT_EQ(AddrOf("a"), addr);
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
  EXPECT_EQ(Rejected(Rejection::kAddressConflict), 2u);
  Collect();
  for (const MemberEvent& e : events_) EXPECT_NE(e.kind, MemberEvent::Kind::kUpdate);
  // Not re-gossiped either.
  Advance(seconds(2));
  for (auto& [to, a] : Sent<Alive>()) EXPECT_NE(a.addr, "203.0.113.66:7659");
}

TEST_F(MembershipTest, DeadOrLeftMemberMayComeBackAtANewAddress) {
  AddPeer("a", 5);
  AddPeer("b", 5);
  Send({Dead{5, "a", "me"}});
  Send({Dead{5, "b", "b"}});
  ASSERT_EQ(StateOf("a"), MemberState::kDead);
  ASSERT_EQ(StateOf("b"), MemberState::kLeft);
  Send({Alive{6, "a", "10.0.9.1:7659", ""}});
  Send({Alive{6, "b", "10.0.9.2:7659", ""}});
  EXPECT_EQ(StateOf("a"), MemberState::kAlive);
  EXPECT_EQ(AddrOf("a"), "10.0.9.1:7659");
  EXPECT_EQ(AddrOf("b"), "10.0.9.2:7659");
  EXPECT_EQ(Rejected(Rejection::kAddressConflict), 0u);
}

TEST_F(MembershipTest, DeadFromANonMemberIsOnlyASuspicion) {
  AddPeer("a");
  Send({Dead{1, "a", "ghost"}});
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
  EXPECT_EQ(Rejected(Rejection::kDeadFromNonMember), 1u);
  AddPeer("b");
  Send({Dead{1, "a", "b"}});  // a live member's verdict stands
  EXPECT_EQ(StateOf("a"), MemberState::kDead);
}

TEST_F(MembershipTest, ConfirmationsFromNonMembersDoNotShortenTheSuspicion) {
  for (auto n : {"a", "b", "c", "d"}) AddPeer(n);
  Send({Suspect{1, "a", "b"}});
  Send({Suspect{1, "a", "ghost1"}});
  Send({Suspect{1, "a", "ghost2"}});
  EXPECT_EQ(Rejected(Rejection::kConfirmationFromNonMember), 2u);
  Advance(seconds(5));  // past the 4 s minimum two real confirmations would give
  EXPECT_EQ(StateOf("a"), MemberState::kSuspect);
}

TEST_F(MembershipTest, PingReqForANonMemberIsNotSentAndIsCounted) {
  AddPeer("t");
  Clear();
  Send({PingReq{5, "ghost", "203.0.113.9:53"}}, "10.0.0.3:7659");
  Send({PingReq{6, "t", "203.0.113.9:53"}}, "10.0.0.3:7659");  // a member, not at its address
  Collect();
  for (auto& [to, m] : sent_) EXPECT_NE(to, "203.0.113.9:53");
  EXPECT_TRUE(Sent<Ping>().empty());
  EXPECT_EQ(Rejected(Rejection::kPingReqUnknownTarget), 1u);
  EXPECT_EQ(Rejected(Rejection::kPingReqWrongAddress), 1u);
  // The requester is told at once, so it is not blamed for a missing nack.
  std::set<uint32_t> nacked;
  for (auto& [to, n] : Sent<Nack>())
    if (to == "10.0.0.3:7659") nacked.insert(n.seq);
  EXPECT_EQ(nacked, (std::set<uint32_t>{5, 6}));
}

TEST_F(MembershipTest, RejectionNamesAreTheMetricLabels) {
  EXPECT_EQ(RejectionName(Rejection::kIncarnationOutOfRange), "incarnation_out_of_range");
  EXPECT_EQ(RejectionName(Rejection::kAddressConflict), "address_conflict");
  EXPECT_EQ(RejectionName(Rejection::kDeadFromNonMember), "dead_from_non_member");
  EXPECT_EQ(RejectionName(Rejection::kConfirmationFromNonMember), "confirmation_from_non_member");
  EXPECT_EQ(RejectionName(Rejection::kPingReqUnknownTarget), "ping_req_unknown_target");
  EXPECT_EQ(RejectionName(Rejection::kPingReqWrongAddress), "ping_req_wrong_address");
}

}  // namespace
}  // namespace oklog::gossip
