// A deterministic cluster simulator: many Membership instances in one process, virtual time,
// an in-memory network with latency, loss, partitions, crashes and CPU-starved (stalled) nodes.
// Same seed, same run. Used by tests/gossip/simulator_test.cpp and tools/bench/gossip_bench.
//
// Network model: UDP packets may be lost (probability `loss`, per packet) and are delayed by a
// uniform latency; streams (push/pull, fallback ping) are never lost but are cut by partitions
// and crashes, like TCP. A stalled node receives nothing and fires no timer until it resumes;
// then, like a libuv loop, it runs its due timers first and reads its backlog after.
// Single-threaded; not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "gossip/config.h"
#include "gossip/membership.h"

namespace oklog::gossip::sim {

struct SimOptions {
  uint64_t seed = 1;
  Preset preset = Preset::kLan;
  Duration latency_min{1};
  Duration latency_max{3};
  double loss = 0.0;
  std::function<void(Config&)> tweak;  // applied to every node's config
};

struct TrafficStats {
  uint64_t packets_sent = 0;
  uint64_t packet_bytes_sent = 0;
  uint64_t streams_sent = 0;  // stream messages (requests and replies)
  uint64_t stream_bytes_sent = 0;
};

class Simulator {
 public:
  explicit Simulator(SimOptions options);
  ~Simulator();

  // Adds and starts a node "n<index>" (not joined yet). Returns its name.
  NodeName AddNode(const std::string& meta = "");
  void Join(const NodeName& node, const std::vector<NodeName>& seeds);
  void Crash(const NodeName& node);
  // A new process under the same name and address, starting at `incarnation`, joining seeds.
  void Restart(const NodeName& node, Incarnation incarnation, const std::vector<NodeName>& seeds);
  void Leave(const NodeName& node);
  void Stall(const NodeName& node, Duration d);
  void UpdateMeta(const NodeName& node, const std::string& meta);
  // A datagram from outside the cluster (say, a forger at `from_addr`), delivered to `node` after
  // the usual latency; never lost.
  void InjectPacket(const NodeName& node, const std::string& from_addr, std::string bytes);
  // Nodes in different groups cannot reach each other; nodes in no group reach everyone.
  void Partition(const std::vector<std::vector<NodeName>>& groups);
  void Heal();
  void SetLoss(double loss) { opt_.loss = loss; }

  void RunFor(Duration d);
  // Runs until pred() holds (checked every `step`) or max passes. Returns whether it held.
  bool RunUntil(const std::function<bool()>& pred, Duration max, Duration step = Duration(50));

  Instant now() const { return now_; }
  std::vector<NodeName> Running() const;  // started, not crashed, not left
  bool IsRunning(const NodeName& node) const;
  Membership* Get(const NodeName& node);
  std::string AddressOf(const NodeName& node) const;
  std::optional<MemberState> View(const NodeName& observer, const NodeName& subject);
  // Every running node sees every other running node alive or suspect.
  bool Converged();
  // Every running node other than `subject` holds it in `state`.
  bool AllSee(const NodeName& subject, MemberState state);

  // Deaths declared (by any node, locally or on news) about a node that was running then.
  uint64_t false_deaths() const { return false_deaths_; }
  uint64_t suspicions_of_running() const { return suspicions_of_running_; }
  TrafficStats Traffic(const NodeName& node) const;
  TrafficStats TotalTraffic() const;
  void ResetTraffic();
  // Observer for every membership event: (observer, event, time).
  std::function<void(const NodeName&, const MemberEvent&, Instant)> on_event;

 private:
  struct Node;
  struct Event;
  struct Later {
    bool operator()(const std::unique_ptr<Event>& a, const std::unique_ptr<Event>& b) const;
  };

  Node* Find(const NodeName& name) const;
  Node* FindByAddr(const std::string& addr) const;
  void Start(Node* n, Incarnation incarnation);
  void Drain(Node* n);
  void Deliver(Node* n, std::unique_ptr<Event> ev);
  void Push(std::unique_ptr<Event> ev);
  bool Connected(const Node* a, const Node* b) const;
  Duration Latency();
  void Step(Instant until);

  SimOptions opt_;
  std::mt19937_64 rng_;
  Instant now_{};
  uint64_t next_event_seq_ = 0;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::map<std::string, Node*> by_addr_;
  std::map<NodeName, Node*> by_name_;
  std::vector<std::unique_ptr<Event>> queue_;  // a heap ordered by Later
  uint64_t false_deaths_ = 0;
  uint64_t suspicions_of_running_ = 0;
};

}  // namespace oklog::gossip::sim
