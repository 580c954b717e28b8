// Membership: the SWIM + Lifeguard state machine, with no sockets, clocks or threads inside.
//
// Inputs are calls: a packet or stream message arrived, time passed (OnTimer), Join/Leave/
// UpdateMetadata. Outputs accumulate in an Outbox that the driver (the libuv GossipNode or
// the simulator) drains after every input: UDP packets to send, stream messages to send (push/
// pull and the TCP fallback ping, each a request whose reply is fed back via OnStream), and
// membership events in the order they happened. NextDeadline() says when OnTimer is next due.
// All randomness comes from Config::random_seed, so a run is a function of its inputs.
//
// Thread: not thread-safe; one driver thread (the node's loop thread). Pointers returned by
// Find() are valid until the next input call.
//
// Rules (each has a test in tests/gossip/membership_test.cpp):
//  * Probing: round-robin over a shuffled list (reshuffled at each wrap, newcomers inserted at a
//    random place); ack timeout, then ping_req through indirect_checks peers (who nack when they
//    get no ack) plus a stream ping; no ack by the end of the (health-scaled) interval -> suspect.
//    A probe whose timer fired more than probe_timeout late is inconclusive: we were starved.
//  * Lifeguard: awareness 0..max-1 scales the probe interval; suspicion timeout starts at max
//    (min when K = 0) and decays with independent confirmations; suspect news about the probe
//    target rides in the ping (and in every packet to a node we think suspect or dead).
//  * Incarnations: our stored incarnation of a node only rises; alive wins only when strictly
//    newer, suspect/dead when at least as new; a node refutes news about itself.
//  * Refusals (counted by Rejection, logged): news more than kMaxIncarnationStep ahead of what
//    we know or above kMaxIncarnation (accusations: at it); an alive with another address for
//    a member not dead or left (memberlist's "Conflicting address"); a dead from a sender that
//    is not a live member is only a suspicion, and a confirmation from one does not count; a
//    ping_req is relayed only to the stored address of a member (else nacked, never sent).
//    Our own incarnation saturates at kMaxIncarnation.
//  * Dissemination: BroadcastQueue, limit RetransmitLimit(N); gossip every gossip_interval to
//    gossip_nodes members including recently dead ones.
//  * Anti-entropy, joining, reconnecting: membership_sync.cpp.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "gossip/broadcast_queue.h"
#include "gossip/config.h"
#include "gossip/types.h"
#include "gossip/wire.h"

namespace spdlog {
class logger;
}

namespace oklog::gossip {

// Why a message from the network was refused. ONLY APPEND: the values index
// MembershipStats::rejected and name the `reason` label of oklog_gossip_messages_rejected_total.
enum class Rejection : uint8_t {
  kIncarnationOutOfRange = 0,  // alive/suspect/dead beyond known + kMaxIncarnationStep or the max
  kAddressConflict = 1,        // alive with another address for a member not dead or left
  kDeadFromNonMember = 2,      // dead from a sender that is not a live member: taken as suspicion
  kConfirmationFromNonMember = 3,  // a suspicion confirmation from a non-member: not counted
  kPingReqUnknownTarget = 4,   // ping_req naming no member (or a left one): nacked, not sent
  kPingReqWrongAddress = 5,    // ping_req whose address is not the target's: nacked, not sent
};
inline constexpr size_t kRejectionKinds = 6;
// "incarnation_out_of_range", "address_conflict", "dead_from_non_member",
// "confirmation_from_non_member", "ping_req_unknown_target", "ping_req_wrong_address".
std::string_view RejectionName(Rejection r);

struct OutPacket {
  std::string to;  // "host:port"
  std::string bytes;
};

struct Outbox {
  std::vector<OutPacket> packets;  // UDP datagrams
  std::vector<OutPacket> streams;  // one stream request each; the reply goes to OnStream
  std::vector<MemberEvent> events;
  bool empty() const { return packets.empty() && streams.empty() && events.empty(); }
};

struct MembershipStats {
  uint64_t probes = 0;
  uint64_t probes_failed = 0;
  uint64_t probes_inconclusive = 0;  // our own timer fired late: no verdict
  uint64_t indirect_probes = 0;
  uint64_t suspicions = 0;  // members we put under suspicion (locally or on news)
  uint64_t refutes = 0;
  uint64_t deaths_declared = 0;  // suspicion timers that expired here
  uint64_t packets_malformed = 0;
  uint64_t messages_unknown = 0;
  uint64_t syncs_started = 0;
  uint64_t syncs_full = 0;  // syncs that exchanged full state
  std::array<uint64_t, kRejectionKinds> rejected{};  // indexed by Rejection
  uint64_t incarnation_saturated = 0;  // refutes/updates that found us at kMaxIncarnation
};

class Membership {
 public:
  // Returns InvalidArgument for a missing name or address, or oversize metadata.
  static Result<std::unique_ptr<Membership>> Create(Config config, std::string meta, Instant now);

  void OnPacket(const std::string& from, std::string_view bytes, Instant now);
  // A stream message from `from` (a request, or the reply to one we sent). Returns the bytes to
  // send back on the same stream, or "" for none.
  std::string OnStream(const std::string& from, std::string_view bytes, Instant now);
  void OnTimer(Instant now);
  // Seeds are "host:port" strings the driver resolves at every attempt. Retried with backoff
  // until one answers; also re-entered whenever we find ourselves alone.
  void Join(std::vector<std::string> seeds, Instant now);
  // Broadcasts our graceful leave; LeaveComplete() turns true once it has been sent enough.
  void Leave(Instant now);
  // Returns InvalidArgument when meta exceeds kMaxMetaBytes, ResourceExhausted (nothing changed)
  // when our incarnation is at kMaxIncarnation and cannot rise to carry the change.
  Status UpdateMetadata(std::string meta, Instant now);

  Outbox TakeOutbox();
  Instant NextDeadline() const;

  std::vector<MemberInfo> Members() const;  // self included, dead and left included
  const MemberInfo* Find(const NodeName& name) const;
  const MemberInfo& self() const;
  size_t LiveCount() const;  // alive + suspect, self included
  int awareness() const { return awareness_; }
  bool joining() const { return joining_; }
  bool LeaveComplete() const;
  uint64_t Digest() const;
  const MembershipStats& stats() const { return stats_; }
  const Config& config() const { return cfg_; }

 private:
  struct Suspicion {
    Instant start{};
    NodeName accuser;
    std::set<NodeName> confirmers;
    int k = 0;
    Duration min{0}, max{0};
    Instant deadline{};
  };
  struct Member {
    MemberInfo info;
    std::optional<Suspicion> suspicion;
  };
  struct Probe {
    NodeName target;
    uint32_t seq = 0;
    Instant start{}, ack_deadline{}, end{};
    bool indirect_sent = false;
    int expected_nacks = 0;
    int nacks = 0;
  };
  struct Relay {
    std::string origin;
    uint32_t origin_seq = 0;
    Instant deadline{};
  };

  Membership(Config config, std::string meta, Instant now);

  enum class Claim : uint8_t { kAlive, kAccusation };

  // membership.cpp: the rules.
  void HandleMessage(const std::string& from, Message& m, Instant now);
  // Whether news at `claimed` about `node` is within the incarnation bounds; counts a refusal.
  bool IncarnationInRange(const NodeName& node, Incarnation claimed, Claim claim, Instant now);
  bool IsLiveMember(const NodeName& name) const;  // self, or alive or suspect here
  // Counts and logs a refusal (debug each; warn at most once a minute per reason).
  void Reject(Rejection why, const std::string& what, Instant now);
  void HandleAlive(const Alive& a, Instant now);
  void HandleSuspect(const Suspect& s, Instant now);
  void HandleDead(const Dead& d, Instant now);
  void Refute(Incarnation accused, Instant now);
  void StartSuspicion(Member& m, const NodeName& accuser, Instant now);
  void ExpireSuspicions(Instant now);
  void SetState(Member& m, MemberState s, Instant now);
  void Emit(MemberEvent::Kind kind, const MemberInfo& info);
  void Broadcast(const NodeName& about, const Message& m);
  Alive SelfAlive() const;
  Member& SelfMember();
  void Changed() { caches_valid_ = false; }
  void RefreshCaches() const;

  // membership_probe.cpp: failure detection and dissemination.
  void ProbeTick(Instant now);
  void StartProbe(Instant now);
  void SendIndirect(Instant now);
  void FinishProbe(Instant now);
  void HandlePing(const std::string& from, const Ping& p, Instant now);
  void HandlePingReq(const std::string& from, const PingReq& r, Instant now);
  void HandleAck(uint32_t seq, Instant now);
  void HandleNack(uint32_t seq);
  void ExpireRelays(Instant now);
  void GossipTick(Instant now);
  std::optional<NodeName> NextProbeTarget();
  void AddToProbeOrder(const NodeName& name);
  std::vector<const Member*> RandomMembers(size_t k, const NodeName& exclude, bool include_recent_dead, Instant now);
  Duration ScaledProbeInterval() const { return cfg_.probe_interval * (awareness_ + 1); }
  void AdjustAwareness(int delta);
  // Sends one packet: news about `about` first when we think it suspect or dead, then `first`,
  // then piggybacked broadcasts.
  void SendPacket(const std::string& to, const NodeName* about, const std::vector<Message>& first);

  // membership_sync.cpp: push/pull, join, reconnect, reaping.
  void SyncTick(Instant now);
  void SendSync(const std::string& to, uint8_t flags, bool full);
  std::string HandleSync(const std::string& from, const Sync& s, Instant now);
  void Merge(const NodeName& source, const std::vector<SyncState>& states, Instant now);
  std::vector<SyncState> FullState() const;
  void ReapTombstones(Instant now);

  Config cfg_;
  uint32_t cluster_hash_;
  std::mt19937_64 rng_;
  std::map<NodeName, Member> members_;
  std::set<std::pair<Instant, NodeName>> suspicion_deadlines_;
  BroadcastQueue broadcasts_;
  Outbox out_;
  MembershipStats stats_;
  int awareness_ = 0;
  uint32_t next_seq_;

  std::optional<Probe> probe_;
  Instant next_probe_at_;
  std::vector<NodeName> probe_order_;
  size_t probe_index_ = 0;
  std::map<uint32_t, Relay> relays_;
  Instant next_gossip_at_;

  Instant next_push_pull_at_;
  Instant next_reconnect_at_;
  std::vector<std::string> seeds_;
  bool joining_ = false;
  Duration join_backoff_{0};
  Instant next_join_at_{};
  int fast_syncs_left_ = 0;
  Instant next_fast_sync_at_{};
  Instant last_unknown_sync_{};
  bool left_ = false;
  bool stale_accusation_ = false;  // set while handling a packet
  std::string input_from_;         // the sender of the packet or stream being handled, for logs
  std::shared_ptr<spdlog::logger> log_;
  std::array<Instant, kRejectionKinds> next_reject_warn_{};
  std::array<uint64_t, kRejectionKinds> rejects_since_warn_{};
  Instant next_saturated_warn_{};

  // Derived views, rebuilt lazily after Changed().
  mutable bool caches_valid_ = false;
  mutable uint64_t digest_ = 0;
  mutable size_t live_count_ = 0;
  mutable std::vector<NodeName> live_others_;
  mutable std::vector<NodeName> dead_others_;
};

}  // namespace oklog::gossip
