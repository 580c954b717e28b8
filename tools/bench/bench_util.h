// Pieces shared by the end-to-end benchmarks (tools/bench/single_node, tools/bench/clusterbench): a running
// `oklog` node process on free loopback ports, HTTP queries that count lines, metrics parsing,
// the machine probes (dd), percentiles, per-thread CPU from /proc. Blocking calls; no shared
// state, so any thread may call them (a NodeProcess belongs to the thread that started it).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tools/bench/process.h"

namespace oklog::bench {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0);
uint64_t WallMs();  // Unix time in ms

struct Stats {
  double median = NAN, min = NAN, max = NAN;
};
Stats Summarize(std::vector<double> v);
// Nearest-rank percentile (p in 0..100); NAN for no samples.
double Percentile(std::vector<double> v, double p);

std::string UrlEncode(std::string_view s);

// Sum of the samples of an unlabelled or labelled metric in Prometheus text; nullopt if absent.
std::optional<double> MetricValue(std::string_view body, std::string_view name);

struct DdResult {
  bool ok = false;
  double mb_per_s = NAN;  // 10^6 bytes per second, as dd prints
};
// dd bs=1M count=1024 conv=fdatasync into dir (the file is removed).
DdResult ProbeDisk(const std::string& dir);

// A fresh directory TMP/PREFIX-XXXXXX for one benchmark run, removed at destruction unless
// `keep` (then its path is printed). Also arms the interrupt handler (children killed) with a
// message naming it. ok() is false (and errno set) when it could not be made.
class ScratchDir {
 public:
  ScratchDir(const std::string& tmp, const std::string& prefix, bool keep);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  bool ok() const { return !dir_.empty(); }
  const std::string& path() const { return dir_; }

 private:
  std::string dir_;
  bool keep_;
};

std::string LoadAverage();  // "/proc/loadavg"'s first three fields
const char* PassMiss(bool pass);
uint64_t DirBytes(const std::string& dir);

// CPU seconds per thread of a live process (tid -> seconds), from /proc/PID/task/*/stat.
std::map<int, double> ThreadCpuSeconds(pid_t pid);
// "main 7: 1.23 s, tid 9: 0.40 s, ..." for the threads that used CPU between before and after,
// busiest first.
std::string ThreadCpuDelta(pid_t pid, const std::map<int, double>& before, const std::map<int, double>& after);

struct QueryRun {
  bool ok = false;  // the request completed with status 200
  int status = 0;
  uint64_t lines = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};
// GET base + path_and_query, reading the whole body and counting lines; on_body (optional)
// sees the body. timeout bounds the head and each wait for body bytes.
QueryRun RunQuery(const std::string& base, const std::string& path_and_query,
                  const std::function<void(std::string_view)>& on_body = nullptr,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

// An `oklog <mode>` process in dir (data under dir/data/{ingest,store}, output in
// dir/node.log and dir/node.err) on free 127.0.0.1 ports for every listener.
class NodeProcess {
 public:
  // Starts it and waits (bounded by ready_timeout) until /metrics answers. nullopt when it
  // exited or never answered (the child is killed then).
  static std::optional<NodeProcess> Start(const std::string& oklog, const std::string& mode, const std::string& dir,
                                          const std::vector<std::string>& extra_args,
                                          std::chrono::milliseconds ready_timeout);

  std::string base() const { return "http://127.0.0.1:" + std::to_string(api_port_); }
  std::string cluster_addr() const { return "127.0.0.1:" + std::to_string(cluster_port_); }
  int fast_port() const { return fast_port_; }
  const std::string& dir() const { return dir_; }
  Child& child() { return child_; }
  pid_t pid() const { return child_.pid(); }

  std::optional<std::string> Get(const std::string& path, std::chrono::milliseconds timeout) const;
  std::optional<std::string> Metrics() const { return Get("/metrics", std::chrono::milliseconds(2000)); }

  // SIGTERM, then waits up to timeout; past stacks_after it writes every thread's stack (gdb)
  // to stderr and dir/shutdown_stacks.txt once. ExitInfo.wall_s is the time since the signal.
  ExitInfo Stop(std::chrono::milliseconds timeout, std::chrono::milliseconds stacks_after);

 private:
  NodeProcess(Child child, std::string dir, int api_port, int fast_port, int cluster_port)
      : child_(std::move(child)), dir_(std::move(dir)), api_port_(api_port), fast_port_(fast_port),
        cluster_port_(cluster_port) {}
  Child child_;
  std::string dir_;
  int api_port_, fast_port_, cluster_port_;
};

}  // namespace oklog::bench
