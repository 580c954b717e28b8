#include "tools/bench/clusterbench/cluster.h"

#include <cstdio>
#include <thread>

namespace oklog::bench {

using std::chrono::milliseconds;

namespace {

size_t AliveMembers(const std::string& cluster_json) {
  size_t n = 0;
  const std::string kAlive = "\"state\":\"alive\"";
  for (size_t p = cluster_json.find(kAlive); p != std::string::npos; p = cluster_json.find(kAlive, p + 1)) ++n;
  return n;
}

}  // namespace

std::unique_ptr<Cluster> Cluster::Start(const std::string& oklog, const std::string& dir,
                                        const std::vector<std::string>& modes,
                                        const std::vector<std::string>& extra_args, milliseconds timeout) {
  std::unique_ptr<Cluster> c(new Cluster);
  c->modes_ = modes;
  const auto deadline = Clock::now() + timeout;
  auto left = [&] { return std::chrono::duration_cast<milliseconds>(deadline - Clock::now()); };
  std::string seed;
  for (size_t i = 0; i < modes.size(); ++i) {
    std::vector<std::string> args = extra_args;
    if (i > 0) args.insert(args.end(), {"-peer", seed});
    const std::string node_dir = dir + "/node" + std::to_string(i) + "-" + modes[i];
    auto n = NodeProcess::Start(oklog, modes[i], node_dir, args, left());
    if (!n) {
      std::fprintf(stderr, "[bench] node %zu (%s) did not start; node.err:\n%s\n", i, modes[i].c_str(),
                   ReadFileOrEmpty(node_dir + "/node.err").c_str());
      return nullptr;
    }
    if (i == 0) seed = n->cluster_addr();
    c->nodes_.push_back(std::make_unique<NodeProcess>(std::move(*n)));
  }
  // Every node must see every other one alive before the clock starts.
  for (auto& n : c->nodes_) {
    for (;;) {
      auto body = n->Get("/cluster", milliseconds(2000));
      if (body && AliveMembers(*body) == modes.size()) break;
      if (Clock::now() >= deadline) {
        std::fprintf(stderr, "[bench] %s never saw all %zu nodes alive; last /cluster: %s\n", n->dir().c_str(),
                     modes.size(), body ? body->c_str() : "(no answer)");
        return nullptr;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  return c;
}

std::vector<NodeProcess*> Cluster::With(Role role) {
  std::vector<NodeProcess*> out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const std::string& m = modes_[i];
    bool has = m == "ingeststore" || (role == Role::kIngest ? m == "ingest" : m == "store");
    if (has) out.push_back(nodes_[i].get());
  }
  return out;
}

std::optional<double> Cluster::SumMetric(Role role, const std::string& name) {
  double sum = 0;
  for (NodeProcess* n : With(role)) {
    auto m = n->Metrics();
    if (!m) return std::nullopt;
    sum += MetricValue(*m, name).value_or(0);
  }
  return sum;
}

std::vector<double> Cluster::CpuSeconds() {
  std::vector<double> out;
  for (auto& n : nodes_) out.push_back(ProcessCpuSeconds(n->pid()).value_or(0));
  return out;
}

int Cluster::Stop() {
  int bad = 0;
  auto stop = [&](size_t i) {
    // An ingest node drains (at most -ingest.drain-timeout, 30 s) before it exits.
    ExitInfo e = nodes_[i]->Stop(milliseconds(40000), milliseconds(35000));
    if (!e.Ok()) {
      std::fprintf(stderr, "[bench] %s: bad exit (exited %d, code %d, timed out %d) after %.1f s\n",
                   nodes_[i]->dir().c_str(), e.exited, e.code, e.timed_out, e.wall_s);
      bad++;
    }
  };
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (modes_[i] == "ingest") stop(i);
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (modes_[i] != "ingest") stop(i);
  return bad;
}

}  // namespace oklog::bench
