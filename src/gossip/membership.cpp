#include "gossip/membership.h"

#include <algorithm>

#include "common/log.h"

namespace oklog::gossip {
namespace {
// A leaving node sends its leave directly to at most this many live members.
constexpr size_t kLeaveDirectSends = 64;
// Refusals are logged at debug each, and at warn at most this often per reason.
constexpr Duration kRejectWarnInterval{60000};

// One more than `i`, saturating at kMaxIncarnation (never wraps).
Incarnation Bump(Incarnation i) { return i < kMaxIncarnation ? i + 1 : kMaxIncarnation; }
}  // namespace

std::string_view RejectionName(Rejection r) {
  switch (r) {
    case Rejection::kIncarnationOutOfRange: return "incarnation_out_of_range";
    case Rejection::kAddressConflict: return "address_conflict";
    case Rejection::kDeadFromNonMember: return "dead_from_non_member";
    case Rejection::kConfirmationFromNonMember: return "confirmation_from_non_member";
    case Rejection::kPingReqUnknownTarget: return "ping_req_unknown_target";
    case Rejection::kPingReqWrongAddress: return "ping_req_wrong_address";
  }
  return "unknown";
}

Result<std::unique_ptr<Membership>> Membership::Create(Config config, std::string meta, Instant now) {
  if (config.name.empty() || config.name.size() > kMaxNameBytes)
    return Status::InvalidArgument("gossip: node name must be 1.." + std::to_string(kMaxNameBytes) + " bytes");
  if (config.advertise_addr.empty() || config.advertise_addr.size() > kMaxAddrBytes)
    return Status::InvalidArgument("gossip: advertise address required");
  if (meta.size() > kMaxMetaBytes)
    return Status::InvalidArgument("gossip: metadata is " + std::to_string(meta.size()) + " bytes, limit " +
                                   std::to_string(kMaxMetaBytes));
  if (config.probe_timeout >= config.probe_interval || config.indirect_checks < 0 || config.gossip_nodes < 1)
    return Status::InvalidArgument("gossip: inconsistent timing configuration");
  if (config.initial_incarnation >= kMaxIncarnation)
    return Status::InvalidArgument("gossip: initial incarnation must be below 2^63");
  return std::unique_ptr<Membership>(new Membership(std::move(config), std::move(meta), now));
}

Membership::Membership(Config config, std::string meta, Instant now)
    : cfg_(std::move(config)), cluster_hash_(ClusterHash(cfg_.cluster_name)), rng_(cfg_.random_seed),
      log_(Logger("gossip")) {
  next_seq_ = static_cast<uint32_t>(rng_());
  Member self;
  self.info.name = cfg_.name;
  self.info.addr = cfg_.advertise_addr;
  self.info.meta = std::move(meta);
  self.info.incarnation = cfg_.initial_incarnation;
  self.info.state = MemberState::kAlive;
  self.info.state_change = now;
  members_.emplace(cfg_.name, std::move(self));
  // Staggered starts so a cluster started at once does not probe and sync in lockstep.
  auto jitter = [&](Duration d) { return Duration(static_cast<int64_t>(rng_() % static_cast<uint64_t>(std::max<int64_t>(1, d.count())))); };
  next_probe_at_ = now + jitter(cfg_.probe_interval);
  next_gossip_at_ = now + cfg_.gossip_interval;
  next_push_pull_at_ = now + cfg_.push_pull_interval + jitter(cfg_.push_pull_interval);
  next_reconnect_at_ = now + cfg_.reconnect_interval + jitter(cfg_.reconnect_interval);
  Broadcast(cfg_.name, SelfAlive());
  Changed();
}

Membership::Member& Membership::SelfMember() { return members_.at(cfg_.name); }
const MemberInfo& Membership::self() const { return members_.at(cfg_.name).info; }

Alive Membership::SelfAlive() const {
  const MemberInfo& s = self();
  return Alive{s.incarnation, s.name, s.addr, s.meta};
}

void Membership::Broadcast(const NodeName& about, const Message& m) { broadcasts_.Push(about, EncodeMessage(m)); }

void Membership::Emit(MemberEvent::Kind kind, const MemberInfo& info) { out_.events.push_back({kind, info}); }

Outbox Membership::TakeOutbox() {
  Outbox o = std::move(out_);
  out_ = Outbox{};
  return o;
}

void Membership::OnPacket(const std::string& from, std::string_view bytes, Instant now) {
  Result<DecodedPacket> pkt = DecodePacket(bytes, cluster_hash_);
  if (!pkt.ok()) {
    ++stats_.packets_malformed;
    return;
  }
  stats_.messages_unknown += pkt->unknown_skipped;
  stale_accusation_ = false;
  input_from_ = from;
  for (Message& m : pkt->messages) HandleMessage(from, m, now);
  input_from_.clear();
  // The sender holds an accusation we refuted long ago (it missed the refutation, which
  // was only gossiped a limited number of times): answer it directly with our alive.
  if (stale_accusation_ && !left_) {
    stale_accusation_ = false;
    SendPacket(from, nullptr, {SelfAlive()});
  }
}

std::string Membership::OnStream(const std::string& from, std::string_view bytes, Instant now) {
  Result<Message> msg = DecodeStreamMessage(bytes);
  if (!msg.ok()) {
    ++stats_.packets_malformed;
    return "";
  }
  if (auto* p = std::get_if<Ping>(&msg.value())) {
    if (p->target != cfg_.name) return "";
    return EncodeMessage(Ack{p->seq});
  }
  if (auto* a = std::get_if<Ack>(&msg.value())) {
    HandleAck(a->seq, now);
    return "";
  }
  input_from_ = from;
  std::string reply = HandleSync(from, std::get<Sync>(msg.value()), now);
  input_from_.clear();
  return reply;
}

void Membership::HandleMessage(const std::string& from, Message& m, Instant now) {
  switch (static_cast<MsgType>(m.index())) {
    case MsgType::kPing: HandlePing(from, std::get<Ping>(m), now); break;
    case MsgType::kPingReq: HandlePingReq(from, std::get<PingReq>(m), now); break;
    case MsgType::kAck: HandleAck(std::get<Ack>(m).seq, now); break;
    case MsgType::kNack: HandleNack(std::get<Nack>(m).seq); break;
    case MsgType::kAlive: {
      const Alive& a = std::get<Alive>(m);
      if (IncarnationInRange(a.node, a.incarnation, Claim::kAlive, now)) HandleAlive(a, now);
      break;
    }
    case MsgType::kSuspect: {
      const Suspect& s = std::get<Suspect>(m);
      if (IncarnationInRange(s.node, s.incarnation, Claim::kAccusation, now)) HandleSuspect(s, now);
      break;
    }
    case MsgType::kDead: {
      const Dead& d = std::get<Dead>(m);
      if (IncarnationInRange(d.node, d.incarnation, Claim::kAccusation, now)) HandleDead(d, now);
      break;
    }
    case MsgType::kSync: break;  // stream-only; the decoder already refuses it in packets
  }
}

bool Membership::IncarnationInRange(const NodeName& node, Incarnation claimed, Claim claim, Instant now) {
  // The accused must be able to outrank an accusation, so accusations stay below the ceiling.
  const Incarnation ceiling = claim == Claim::kAccusation ? kMaxIncarnation - 1 : kMaxIncarnation;
  bool ok = claimed <= ceiling;
  auto it = members_.find(node);
  if (ok && it != members_.end()) {
    const Incarnation known = it->second.info.incarnation;
    ok = claimed <= known || claimed - known <= kMaxIncarnationStep;
  }
  if (ok) return true;
  Reject(Rejection::kIncarnationOutOfRange,
         std::string(claim == Claim::kAlive ? "alive" : "accusation") + " about " + node + " at incarnation " +
             std::to_string(claimed) +
             (it != members_.end() ? ", known at " + std::to_string(it->second.info.incarnation) : ", unknown"),
         now);
  return false;
}

bool Membership::IsLiveMember(const NodeName& name) const {
  if (name == cfg_.name) return true;
  auto it = members_.find(name);
  if (it == members_.end()) return false;
  return it->second.info.state == MemberState::kAlive || it->second.info.state == MemberState::kSuspect;
}

void Membership::Reject(Rejection why, const std::string& what, Instant now) {
  const size_t i = static_cast<size_t>(why);
  ++stats_.rejected[i];
  ++rejects_since_warn_[i];
  const std::string_view from = input_from_.empty() ? std::string_view("-") : std::string_view(input_from_);
  if (now >= next_reject_warn_[i]) {
    log_->warn("node={} refused gossip reason={} count_since_last_warning={} latest: {} (from {})", cfg_.name,
               RejectionName(why), rejects_since_warn_[i], what, from);
    rejects_since_warn_[i] = 0;
    next_reject_warn_[i] = now + kRejectWarnInterval;
  } else {
    log_->debug("node={} refused gossip reason={}: {} (from {})", cfg_.name, RejectionName(why), what, from);
  }
}

void Membership::SetState(Member& m, MemberState s, Instant now) {
  if (m.info.state != s) m.info.state_change = now;
  m.info.state = s;
  if (s != MemberState::kSuspect && m.suspicion) {
    suspicion_deadlines_.erase({m.suspicion->deadline, m.info.name});
    m.suspicion.reset();
  }
  Changed();
}

void Membership::Refute(Incarnation accused, Instant now) {
  if (left_) return;
  Member& s = SelfMember();
  // Accepted news is at most kMaxIncarnation (accusations below it), so this never wraps. At the
  // ceiling we cannot outrank an alive claim made at it; we rebroadcast ours anyway (peers
  // that hold us alive keep our address: they refuse an alive with another one).
  const Incarnation base = std::max(s.info.incarnation, accused);
  if (base >= kMaxIncarnation) {
    ++stats_.incarnation_saturated;
    if (now >= next_saturated_warn_) {
      log_->error("node={} incarnation is at its maximum ({}): refutations can no longer outrank news about us; "
                  "restart under a new name",
                  cfg_.name, kMaxIncarnation);
      next_saturated_warn_ = now + kRejectWarnInterval;
    }
  }
  s.info.incarnation = Bump(std::min(base, kMaxIncarnation));
  s.info.state_change = now;
  ++stats_.refutes;
  AdjustAwareness(1);
  Broadcast(cfg_.name, SelfAlive());
  Changed();
}

void Membership::HandleAlive(const Alive& a, Instant now) {
  if (a.node == cfg_.name) {
    const MemberInfo& s = self();
    // A newer incarnation of us, or ours with other data (a previous life after a restart).
    if (a.incarnation > s.incarnation || (a.incarnation == s.incarnation && (a.meta != s.meta || a.addr != s.addr)))
      Refute(a.incarnation, now);
    return;
  }
  auto it = members_.find(a.node);
  if (it == members_.end()) {
    if (members_.size() >= kMaxSyncMembers) return;
    Member m;
    m.info = MemberInfo{a.node, a.addr, a.meta, a.incarnation, MemberState::kAlive, now};
    it = members_.emplace(a.node, std::move(m)).first;
    AddToProbeOrder(a.node);
    Changed();
    Emit(MemberEvent::Kind::kJoin, it->second.info);
    Broadcast(a.node, a);
    return;
  }
  Member& m = it->second;
  // Strictly newer only: equal-incarnation alive never overrides suspect/dead evidence, and
  // since our stored incarnation only rises, a stale alive cannot resurrect anybody.
  if (a.incarnation <= m.info.incarnation) return;
  const MemberState prev = m.info.state;
  // As memberlist: a member we hold alive or suspect keeps its address; only a dead or left one
  // may come back elsewhere (a restart). Otherwise anyone could redirect a live node's traffic
  // with one forged alive. (memberlist also waits DeadNodeReclaimTime for a dead one, by
  // default for ever; we do not: death already took failure evidence, and tombstones live 1 h.)
  if (m.info.addr != a.addr && (prev == MemberState::kAlive || prev == MemberState::kSuspect)) {
    Reject(Rejection::kAddressConflict,
           "alive about " + a.node + " at incarnation " + std::to_string(a.incarnation) + " with address " + a.addr +
               ", held " + std::string(MemberStateName(prev)) + " at " + m.info.addr,
           now);
    return;
  }
  const bool data_changed = m.info.meta != a.meta || m.info.addr != a.addr;
  m.info.incarnation = a.incarnation;
  m.info.addr = a.addr;
  m.info.meta = a.meta;
  SetState(m, MemberState::kAlive, now);
  if (prev == MemberState::kDead || prev == MemberState::kLeft) AddToProbeOrder(a.node);
  Broadcast(a.node, a);
  if (prev == MemberState::kDead || prev == MemberState::kLeft) {
    Emit(MemberEvent::Kind::kJoin, m.info);
  } else if (prev == MemberState::kSuspect) {
    Emit(MemberEvent::Kind::kRecover, m.info);
    if (data_changed) Emit(MemberEvent::Kind::kUpdate, m.info);
  } else if (data_changed) {
    Emit(MemberEvent::Kind::kUpdate, m.info);
  }
}

void Membership::StartSuspicion(Member& m, const NodeName& accuser, Instant now) {
  const size_t n = LiveCount();
  Suspicion s;
  s.start = now;
  s.accuser = accuser;
  s.k = SuspicionConfirmationsNeeded(cfg_, n);
  s.min = SuspicionMinTimeout(cfg_, n);
  s.max = SuspicionMaxTimeout(cfg_, n);
  s.deadline = now + SuspicionTimeout(s.min, s.max, s.k, 0);
  suspicion_deadlines_.insert({s.deadline, m.info.name});
  m.suspicion = std::move(s);
}

void Membership::HandleSuspect(const Suspect& s, Instant now) {
  if (s.node == cfg_.name) {
    if (s.incarnation >= self().incarnation) {
      Refute(s.incarnation, now);
    } else {
      stale_accusation_ = true;  // the sender missed our refutation: OnPacket tells it
    }
    return;
  }
  auto it = members_.find(s.node);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (s.incarnation < m.info.incarnation) return;
  switch (m.info.state) {
    case MemberState::kSuspect: {
      if (s.incarnation > m.info.incarnation) {
        // The node refuted the old suspicion (we missed that) and is suspected anew: a new
        // timer, not the remainder of the old one.
        m.info.incarnation = s.incarnation;
        suspicion_deadlines_.erase({m.suspicion->deadline, m.info.name});
        StartSuspicion(m, s.from, now);
        Broadcast(s.node, s);
        return;
      }
      // Lifeguard: an independent confirmation (not the accuser, not seen before) shortens
      // the timer and is passed on; later ones and repeats are not.
      Suspicion& sus = *m.suspicion;
      if (s.from == sus.accuser || s.from == s.node || sus.confirmers.count(s.from) ||
          static_cast<int>(sus.confirmers.size()) >= sus.k)
        return;
      // Made-up names must not shorten the timer: only live members confirm.
      if (!IsLiveMember(s.from)) {
        Reject(Rejection::kConfirmationFromNonMember,
               "confirmation of the suspicion of " + s.node + " from " + s.from, now);
        return;
      }
      sus.confirmers.insert(s.from);
      Instant deadline = sus.start + SuspicionTimeout(sus.min, sus.max, sus.k, static_cast<int>(sus.confirmers.size()));
      suspicion_deadlines_.erase({sus.deadline, m.info.name});
      sus.deadline = std::max(deadline, now);
      suspicion_deadlines_.insert({sus.deadline, m.info.name});
      Broadcast(s.node, s);
      return;
    }
    case MemberState::kDead:
    case MemberState::kLeft:
      // Suspicion at a higher incarnation than the death we know is news that the node lived
      // on (it refuted elsewhere): watch it again. Otherwise stale.
      if (s.incarnation == m.info.incarnation) return;
      [[fallthrough]];
    case MemberState::kAlive: {
      const bool was_alive = m.info.state == MemberState::kAlive;
      m.info.incarnation = s.incarnation;
      SetState(m, MemberState::kSuspect, now);
      if (!was_alive) AddToProbeOrder(s.node);
      StartSuspicion(m, s.from, now);
      ++stats_.suspicions;
      Broadcast(s.node, s);
      Emit(was_alive ? MemberEvent::Kind::kSuspect : MemberEvent::Kind::kJoin, m.info);
      return;
    }
  }
}

void Membership::HandleDead(const Dead& d, Instant now) {
  if (d.node == cfg_.name) {
    if (left_) return;  // our own leave coming back
    if (d.incarnation >= self().incarnation) {
      Refute(d.incarnation, now);
    } else {
      stale_accusation_ = true;
    }
    return;
  }
  auto it = members_.find(d.node);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (d.incarnation < m.info.incarnation) return;
  const MemberState next = d.from == d.node ? MemberState::kLeft : MemberState::kDead;
  // A verdict from a sender that is not a live member (a made-up name, or one dead itself) is
  // only grounds for our own suspicion, which the accused can refute (as push/pull's dead).
  if (next == MemberState::kDead && !IsLiveMember(d.from)) {
    if (m.info.state == MemberState::kAlive || m.info.state == MemberState::kSuspect) {
      Reject(Rejection::kDeadFromNonMember,
             "dead about " + d.node + " from " + d.from + ": taken as a suspicion", now);
      HandleSuspect(Suspect{d.incarnation, d.node, d.from}, now);
    }
    return;
  }
  if (m.info.state == MemberState::kDead || m.info.state == MemberState::kLeft) {
    m.info.incarnation = d.incarnation;  // only ever raises (checked above)
    // A graceful leave upgrades a death we inferred; nothing else is news.
    if (!(m.info.state == MemberState::kDead && next == MemberState::kLeft)) return;
  }
  m.info.incarnation = d.incarnation;
  SetState(m, next, now);
  Broadcast(d.node, d);
  Emit(next == MemberState::kLeft ? MemberEvent::Kind::kLeft : MemberEvent::Kind::kDead, m.info);
}

void Membership::ExpireSuspicions(Instant now) {
  while (!suspicion_deadlines_.empty() && suspicion_deadlines_.begin()->first <= now) {
    auto [deadline, name] = *suspicion_deadlines_.begin();
    suspicion_deadlines_.erase(suspicion_deadlines_.begin());
    auto it = members_.find(name);
    if (it == members_.end() || !it->second.suspicion || it->second.suspicion->deadline != deadline) continue;
    Member& m = it->second;
    // A timer that fires far behind schedule means this process was starved; refutations may
    // be sitting unread in our socket buffer. Give them one probe interval to be read first.
    if (now - deadline > cfg_.probe_interval) {
      m.suspicion->deadline = now + cfg_.probe_interval;
      suspicion_deadlines_.insert({m.suspicion->deadline, name});
      continue;
    }
    ++stats_.deaths_declared;
    HandleDead(Dead{m.info.incarnation, name, cfg_.name}, now);
  }
}

void Membership::OnTimer(Instant now) {
  ExpireSuspicions(now);
  ExpireRelays(now);
  ProbeTick(now);
  GossipTick(now);
  SyncTick(now);
}

Instant Membership::NextDeadline() const {
  Instant next = Instant::max();
  auto consider = [&](Instant t) { next = std::min(next, t); };
  if (!suspicion_deadlines_.empty()) consider(suspicion_deadlines_.begin()->first);
  for (const auto& [seq, r] : relays_) consider(r.deadline);
  if (probe_) {
    consider(probe_->indirect_sent ? probe_->end : probe_->ack_deadline);
  } else if (!left_) {
    consider(next_probe_at_);
  }
  if (!broadcasts_.empty()) consider(next_gossip_at_);
  if (!left_) {
    consider(next_push_pull_at_);
    consider(next_reconnect_at_);
    if (joining_) consider(next_join_at_);
    if (fast_syncs_left_ > 0) consider(next_fast_sync_at_);
  }
  return next;
}

Status Membership::UpdateMetadata(std::string meta, Instant now) {
  if (meta.size() > kMaxMetaBytes)
    return Status::InvalidArgument("gossip: metadata is " + std::to_string(meta.size()) + " bytes, limit " +
                                   std::to_string(kMaxMetaBytes));
  Member& s = SelfMember();
  if (s.info.incarnation >= kMaxIncarnation) {
    ++stats_.incarnation_saturated;
    return Status::ResourceExhausted("gossip: incarnation at its maximum, metadata cannot change");
  }
  s.info.meta = std::move(meta);
  s.info.incarnation = Bump(s.info.incarnation);
  s.info.state_change = now;
  Broadcast(cfg_.name, SelfAlive());
  Changed();
  Emit(MemberEvent::Kind::kUpdate, s.info);
  return Status::Ok();
}

void Membership::Leave(Instant now) {
  if (left_) return;
  left_ = true;
  joining_ = false;
  fast_syncs_left_ = 0;
  probe_.reset();
  Member& s = SelfMember();
  s.info.state = MemberState::kLeft;
  s.info.state_change = now;
  Changed();
  const Dead leave{s.info.incarnation, cfg_.name, cfg_.name};
  // Tell the live members directly (bounded): gossip alone picks k random targets, recently
  // dead ones included, and a member that missed the leave and its re-gossip suspects us and
  // records `dead` instead of `left` (seen with one node just killed and a loaded machine).
  // Before the broadcast is queued, so these packets carry it once.
  RefreshCaches();
  const std::vector<NodeName> live = live_others_;
  for (size_t i = 0; i < live.size() && i < kLeaveDirectSends; ++i) {
    auto it = members_.find(live[i]);
    if (it != members_.end()) SendPacket(it->second.info.addr, nullptr, {leave});
  }
  Broadcast(cfg_.name, leave);  // then the gossip, now rather than at the next tick
  next_gossip_at_ = now;
  GossipTick(now);
}

bool Membership::LeaveComplete() const {
  if (!left_) return false;
  RefreshCaches();
  return !broadcasts_.Contains(cfg_.name) || live_others_.empty();
}

std::vector<MemberInfo> Membership::Members() const {
  std::vector<MemberInfo> out;
  out.reserve(members_.size());
  for (const auto& [name, m] : members_) out.push_back(m.info);
  return out;
}

const MemberInfo* Membership::Find(const NodeName& name) const {
  auto it = members_.find(name);
  return it == members_.end() ? nullptr : &it->second.info;
}

size_t Membership::LiveCount() const {
  RefreshCaches();
  return live_count_;
}

uint64_t Membership::Digest() const {
  RefreshCaches();
  return digest_;
}

void Membership::RefreshCaches() const {
  if (caches_valid_) return;
  caches_valid_ = true;
  live_others_.clear();
  dead_others_.clear();
  live_count_ = 0;
  // FNV-1a 64 over (name, incarnation, state class) in name order: equal on two nodes exactly
  // when their tables agree, suspect counting as alive (it is a local, transient opinion).
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  };
  for (const auto& [name, m] : members_) {
    const MemberState st = m.info.state;
    const bool live = st == MemberState::kAlive || st == MemberState::kSuspect;
    if (live) ++live_count_;
    if (name != cfg_.name) {
      if (live) live_others_.push_back(name);
      if (st == MemberState::kDead) dead_others_.push_back(name);
    }
    uint8_t cls = live ? 0 : static_cast<uint8_t>(st);
    mix(name.data(), name.size());
    mix("\0", 1);
    mix(&m.info.incarnation, sizeof m.info.incarnation);
    mix(&cls, 1);
  }
  digest_ = h;
}

}  // namespace oklog::gossip
