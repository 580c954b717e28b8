// A set of real `oklog` node processes on 127.0.0.1 for the cluster benchmark: the first node
// is started alone, every other one with only the first as `-peer` seed. A standalone cluster
// is one `ingeststore` without -peer (the single-node reference). Owns the processes: the
// destructor kills whatever still runs (Child's destructor), Stop() ends them in order.
// One thread only.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tools/bench/bench_util.h"

namespace oklog::bench {

enum class Role { kIngest, kStore };

class Cluster {
 public:
  // modes: "ingest" | "store" | "ingeststore", the first is the seed. A single "ingeststore"
  // runs standalone (no -peer). extra_args go to every node. Waits (bounded by timeout) until
  // every node answers and every node's /cluster shows all of them alive. nullopt on failure
  // (why goes to stderr; the started processes are killed).
  static std::unique_ptr<Cluster> Start(const std::string& oklog, const std::string& dir,
                                        const std::vector<std::string>& modes,
                                        const std::vector<std::string>& extra_args,
                                        std::chrono::milliseconds timeout);

  // Nodes with the role (an ingeststore node has both), in start order.
  std::vector<NodeProcess*> With(Role role);
  NodeProcess& node(size_t i) { return *nodes_[i]; }
  size_t size() const { return nodes_.size(); }

  // Sum of a metric over the nodes with the role; nullopt when any of them did not answer.
  std::optional<double> SumMetric(Role role, const std::string& name);
  // CPU seconds used so far by each node (0 when unreadable), in start order.
  std::vector<double> CpuSeconds();

  // SIGTERM the ingest-only nodes first (they drain to the stores), then the rest. Returns the
  // number of nodes that did not exit 0 in time.
  int Stop();

 private:
  Cluster() = default;
  std::vector<std::string> modes_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
};

}  // namespace oklog::bench
