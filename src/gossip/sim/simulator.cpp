#include "gossip/sim/simulator.h"

#include <algorithm>

#include "common/status.h"

namespace oklog::gossip::sim {

struct Simulator::Node {
  NodeName name;
  std::string addr;
  size_t group = 0;  // 0: no partition group
  bool running = false;
  bool left = false;
  uint64_t generation = 0;
  std::unique_ptr<Membership> m;
  Instant timer_at = Instant::max();
  Instant stalled_until{};
  std::vector<std::unique_ptr<Event>> backlog;
  TrafficStats traffic;
};

struct Simulator::Event {
  enum class Kind { kTimer, kPacket, kStream, kResume };
  Instant t{};
  uint64_t seq = 0;
  Kind kind = Kind::kTimer;
  Node* to = nullptr;
  uint64_t generation = 0;
  std::string from;
  std::string bytes;
};

bool Simulator::Later::operator()(const std::unique_ptr<Event>& a, const std::unique_ptr<Event>& b) const {
  if (a->t != b->t) return a->t > b->t;
  return a->seq > b->seq;
}

Simulator::Simulator(SimOptions options) : opt_(std::move(options)), rng_(opt_.seed) {}
Simulator::~Simulator() = default;

Simulator::Node* Simulator::Find(const NodeName& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Simulator::Node* Simulator::FindByAddr(const std::string& addr) const {
  auto it = by_addr_.find(addr);
  return it == by_addr_.end() ? nullptr : it->second;
}

NodeName Simulator::AddNode(const std::string& meta) {
  size_t i = nodes_.size();
  auto n = std::make_unique<Node>();
  n->name = "n" + std::to_string(i);
  n->addr = "10." + std::to_string(i / 65536) + "." + std::to_string((i / 256) % 256) + "." + std::to_string(i % 256) +
            ":7659";
  Node* raw = n.get();
  nodes_.push_back(std::move(n));
  by_addr_[raw->addr] = raw;
  by_name_[raw->name] = raw;
  Start(raw, 1);
  if (!meta.empty()) (void)raw->m->UpdateMetadata(meta, now_);
  Drain(raw);
  return raw->name;
}

void Simulator::Start(Node* n, Incarnation incarnation) {
  Config c = Config::ForPreset(opt_.preset);
  c.name = n->name;
  c.advertise_addr = n->addr;
  c.random_seed = rng_();
  c.initial_incarnation = incarnation;
  if (opt_.tweak) opt_.tweak(c);
  auto m = Membership::Create(c, "", now_);
  OKLOG_CHECK(m.ok());
  n->m = std::move(m).value();
  n->running = true;
  n->left = false;
  n->generation++;
  n->timer_at = Instant::max();
  n->backlog.clear();
}

void Simulator::Join(const NodeName& node, const std::vector<NodeName>& seeds) {
  Node* n = Find(node);
  std::vector<std::string> addrs;
  for (const NodeName& s : seeds) addrs.push_back(AddressOf(s));
  n->m->Join(addrs, now_);
  Drain(n);
}

void Simulator::Crash(const NodeName& node) {
  Node* n = Find(node);
  n->running = false;
  n->generation++;
  n->backlog.clear();
}

void Simulator::Restart(const NodeName& node, Incarnation incarnation, const std::vector<NodeName>& seeds) {
  Node* n = Find(node);
  Start(n, incarnation);
  Drain(n);
  Join(node, seeds);
}

void Simulator::Leave(const NodeName& node) {
  Node* n = Find(node);
  n->m->Leave(now_);
  Drain(n);
  n->left = true;
}

void Simulator::Stall(const NodeName& node, Duration d) {
  Node* n = Find(node);
  n->stalled_until = now_ + d;
  auto ev = std::make_unique<Event>();
  ev->t = n->stalled_until;
  ev->kind = Event::Kind::kResume;
  ev->to = n;
  ev->generation = n->generation;
  Push(std::move(ev));
}

void Simulator::UpdateMeta(const NodeName& node, const std::string& meta) {
  Node* n = Find(node);
  OKLOG_CHECK(n->m->UpdateMetadata(meta, now_).ok());
  Drain(n);
}

void Simulator::InjectPacket(const NodeName& node, const std::string& from_addr, std::string bytes) {
  Node* n = Find(node);
  auto ev = std::make_unique<Event>();
  ev->t = now_ + Latency();
  ev->kind = Event::Kind::kPacket;
  ev->to = n;
  ev->generation = n->generation;
  ev->from = from_addr;
  ev->bytes = std::move(bytes);
  Push(std::move(ev));
}

void Simulator::Partition(const std::vector<std::vector<NodeName>>& groups) {
  for (auto& n : nodes_) n->group = 0;
  for (size_t g = 0; g < groups.size(); ++g)
    for (const NodeName& name : groups[g]) Find(name)->group = g + 1;
}

void Simulator::Heal() {
  for (auto& n : nodes_) n->group = 0;
}

bool Simulator::Connected(const Node* a, const Node* b) const {
  return a->group == 0 || b->group == 0 || a->group == b->group;
}

Duration Simulator::Latency() {
  int64_t span = (opt_.latency_max - opt_.latency_min).count();
  return opt_.latency_min + Duration(span > 0 ? static_cast<int64_t>(rng_() % static_cast<uint64_t>(span + 1)) : 0);
}

void Simulator::Push(std::unique_ptr<Event> ev) {
  ev->seq = next_event_seq_++;
  queue_.push_back(std::move(ev));
  std::push_heap(queue_.begin(), queue_.end(), Later{});
}

void Simulator::Drain(Node* n) {
  if (!n->running) return;
  Outbox o = n->m->TakeOutbox();
  for (OutPacket& p : o.packets) {
    n->traffic.packets_sent++;
    n->traffic.packet_bytes_sent += p.bytes.size();
    Node* dst = FindByAddr(p.to);
    if (!dst || !Connected(n, dst)) continue;
    if (opt_.loss > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < opt_.loss) continue;
    auto ev = std::make_unique<Event>();
    ev->t = now_ + Latency();
    ev->kind = Event::Kind::kPacket;
    ev->to = dst;
    ev->generation = dst->generation;
    ev->from = n->addr;
    ev->bytes = std::move(p.bytes);
    Push(std::move(ev));
  }
  for (OutPacket& s : o.streams) {
    n->traffic.streams_sent++;
    n->traffic.stream_bytes_sent += s.bytes.size();
    Node* dst = FindByAddr(s.to);
    if (!dst || !Connected(n, dst)) continue;
    auto ev = std::make_unique<Event>();
    ev->t = now_ + Latency();
    ev->kind = Event::Kind::kStream;
    ev->to = dst;
    ev->generation = dst->generation;
    ev->from = n->addr;
    ev->bytes = std::move(s.bytes);
    Push(std::move(ev));
  }
  for (const MemberEvent& e : o.events) {
    Node* subject = Find(e.member.name);
    const bool subject_running = subject && subject->running && !subject->left;
    if (e.kind == MemberEvent::Kind::kDead && subject_running) ++false_deaths_;
    if (e.kind == MemberEvent::Kind::kSuspect && subject_running) ++suspicions_of_running_;
    if (on_event) on_event(n->name, e, now_);
  }
  Instant next = n->m->NextDeadline();
  if (next != Instant::max()) {
    next = std::max(next, now_ + Duration(1));
    if (next < n->timer_at || n->timer_at <= now_) {
      n->timer_at = next;
      auto ev = std::make_unique<Event>();
      ev->t = next;
      ev->kind = Event::Kind::kTimer;
      ev->to = n;
      ev->generation = n->generation;
      Push(std::move(ev));
    }
  }
}

void Simulator::Deliver(Node* n, std::unique_ptr<Event> ev) {
  switch (ev->kind) {
    case Event::Kind::kTimer:
      if (ev->t != n->timer_at) return;  // superseded by an earlier timer
      n->timer_at = Instant::max();
      n->m->OnTimer(now_);
      break;
    case Event::Kind::kPacket:
      n->m->OnPacket(ev->from, ev->bytes, now_);
      break;
    case Event::Kind::kStream: {
      std::string reply = n->m->OnStream(ev->from, ev->bytes, now_);
      Node* peer = FindByAddr(ev->from);
      if (!reply.empty() && peer && peer->running && Connected(n, peer)) {
        n->traffic.streams_sent++;
        n->traffic.stream_bytes_sent += reply.size();
        auto r = std::make_unique<Event>();
        r->t = now_ + Latency();
        r->kind = Event::Kind::kStream;
        r->to = peer;
        r->generation = peer->generation;
        r->from = n->addr;
        r->bytes = std::move(reply);
        Push(std::move(r));
      }
      break;
    }
    case Event::Kind::kResume: {
      // Like a libuv loop waking up: due timers first, then the backlog of reads.
      n->timer_at = Instant::max();
      n->m->OnTimer(now_);
      Drain(n);
      std::vector<std::unique_ptr<Event>> backlog = std::move(n->backlog);
      n->backlog.clear();
      for (auto& b : backlog)
        if (b->kind != Event::Kind::kTimer) Deliver(n, std::move(b));
      break;
    }
  }
  Drain(n);
}

void Simulator::Step(Instant until) {
  while (!queue_.empty() && queue_.front()->t <= until) {
    std::pop_heap(queue_.begin(), queue_.end(), Later{});
    std::unique_ptr<Event> ev = std::move(queue_.back());
    queue_.pop_back();
    now_ = std::max(now_, ev->t);
    Node* n = ev->to;
    if (!n->running || ev->generation != n->generation) continue;
    if (ev->kind != Event::Kind::kResume && now_ < n->stalled_until) {
      n->backlog.push_back(std::move(ev));
      continue;
    }
    Deliver(n, std::move(ev));
  }
  now_ = std::max(now_, until);
}

void Simulator::RunFor(Duration d) { Step(now_ + d); }

bool Simulator::RunUntil(const std::function<bool()>& pred, Duration max, Duration step) {
  Instant end = now_ + max;
  while (true) {
    if (pred()) return true;
    if (now_ >= end) return false;
    Step(std::min(end, now_ + step));
  }
}

std::vector<NodeName> Simulator::Running() const {
  std::vector<NodeName> out;
  for (const auto& n : nodes_)
    if (n->running && !n->left) out.push_back(n->name);
  return out;
}

bool Simulator::IsRunning(const NodeName& node) const {
  Node* n = Find(node);
  return n && n->running && !n->left;
}

Membership* Simulator::Get(const NodeName& node) {
  Node* n = Find(node);
  return n && n->running ? n->m.get() : nullptr;
}

std::string Simulator::AddressOf(const NodeName& node) const { return Find(node)->addr; }

std::optional<MemberState> Simulator::View(const NodeName& observer, const NodeName& subject) {
  Membership* m = Get(observer);
  if (!m) return std::nullopt;
  const MemberInfo* i = m->Find(subject);
  if (!i) return std::nullopt;
  return i->state;
}

bool Simulator::Converged() {
  std::vector<NodeName> running = Running();
  for (const NodeName& a : running) {
    Membership* m = Get(a);
    if (m->LiveCount() != running.size()) return false;
    for (const NodeName& b : running) {
      const MemberInfo* i = m->Find(b);
      if (!i || (i->state != MemberState::kAlive && i->state != MemberState::kSuspect)) return false;
    }
  }
  return true;
}

bool Simulator::AllSee(const NodeName& subject, MemberState state) {
  for (const NodeName& a : Running()) {
    if (a == subject) continue;
    const MemberInfo* i = Get(a)->Find(subject);
    if (!i || i->state != state) return false;
  }
  return true;
}

TrafficStats Simulator::Traffic(const NodeName& node) const { return Find(node)->traffic; }

TrafficStats Simulator::TotalTraffic() const {
  TrafficStats t;
  for (const auto& n : nodes_) {
    t.packets_sent += n->traffic.packets_sent;
    t.packet_bytes_sent += n->traffic.packet_bytes_sent;
    t.streams_sent += n->traffic.streams_sent;
    t.stream_bytes_sent += n->traffic.stream_bytes_sent;
  }
  return t;
}

void Simulator::ResetTraffic() {
  for (auto& n : nodes_) n->traffic = TrafficStats{};
}

}  // namespace oklog::gossip::sim
