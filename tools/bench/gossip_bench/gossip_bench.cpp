// gossip_bench: SWIM membership on the deterministic simulator (virtual time, LAN preset),
// printed beside hashicorp/memberlist's figures measured on this machine (reference/swim.md
// §0 and §2.2). Usage: gossip_bench [--quick] [--sizes=5,10,50,100,1000]
//
// Scenarios, each from a fresh seeded cluster:
//   join    all N-1 nodes join through one seed at the same instant; time until every node
//           sees every node alive.
//   crash   a converged cluster, 10 s later a random non-seed node stops without leaving;
//           time until every survivor holds it dead.
//   loss    UDP loss 5 % / 10 % (streams intact), 120 s: healthy nodes declared dead.
//   starve  10 % of the nodes stall 3 s at random every ~10 s, 120 s: healthy nodes declared dead.
//   quiet   a settled cluster, 120 s: UDP + TCP bytes and packets sent per node per second.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gossip/sim/simulator.h"

using oklog::gossip::Duration;
using oklog::gossip::MemberState;
using oklog::gossip::NodeName;
using oklog::gossip::sim::Simulator;
using std::chrono::seconds;

namespace {

double Secs(Duration d) { return static_cast<double>(d.count()) / 1000.0; }

double Median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}
double Max(const std::vector<double>& v) { return v.empty() ? -1 : *std::max_element(v.begin(), v.end()); }

std::vector<NodeName> Cluster(Simulator& s, int n) {
  std::vector<NodeName> names;
  for (int i = 0; i < n; ++i) names.push_back(s.AddNode("meta-" + std::to_string(i)));
  for (int i = 1; i < n; ++i) s.Join(names[i], {names[0]});
  return names;
}

Duration StepFor(int n) { return Duration(n >= 500 ? 100 : 10); }

// Returns join convergence seconds, or -1 when not converged within the limit.
double JoinRun(int n, uint64_t seed) {
  Simulator s({.seed = seed});
  Cluster(s, n);
  auto start = s.now();
  if (!s.RunUntil([&] { return s.Converged(); }, seconds(120), StepFor(n))) return -1;
  return Secs(s.now() - start);
}

double CrashRun(int n, uint64_t seed) {
  Simulator s({.seed = seed});
  auto names = Cluster(s, n);
  if (!s.RunUntil([&] { return s.Converged(); }, seconds(120), StepFor(n))) return -1;
  s.RunFor(seconds(10));
  NodeName victim = names[1 + seed % static_cast<uint64_t>(n - 1)];
  s.Crash(victim);
  auto start = s.now();
  if (!s.RunUntil([&] { return s.AllSee(victim, MemberState::kDead); }, seconds(120), Duration(10))) return -1;
  return Secs(s.now() - start);
}

struct FpResult {
  uint64_t false_deaths = 0;
  uint64_t suspicions = 0;
  bool converged_at_end = false;
};

FpResult LossRun(int n, double loss, uint64_t seed) {
  Simulator s({.seed = seed});
  Cluster(s, n);
  s.RunUntil([&] { return s.Converged(); }, seconds(120), StepFor(n));
  s.SetLoss(loss);
  uint64_t fd0 = s.false_deaths(), su0 = s.suspicions_of_running();
  s.RunFor(seconds(120));
  return {s.false_deaths() - fd0, s.suspicions_of_running() - su0, s.Converged()};
}

FpResult StarveRun(int n, uint64_t seed) {
  Simulator s({.seed = seed});
  auto names = Cluster(s, n);
  s.RunUntil([&] { return s.Converged(); }, seconds(120), StepFor(n));
  uint64_t fd0 = s.false_deaths(), su0 = s.suspicions_of_running();
  std::vector<NodeName> starved;
  for (int i = 0; i < std::max(1, n / 10); ++i) starved.push_back(names[static_cast<size_t>(1 + (i * 7919) % (n - 1))]);
  uint64_t r = seed;
  std::vector<int> busy_until(starved.size(), 0);
  for (int second = 0; second < 120; ++second) {
    for (size_t i = 0; i < starved.size(); ++i) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      // A 3 s stall about every 10 s, each followed by at least 3 s of normal running.
      if (second >= busy_until[i] && (r >> 33) % 7 == 0) {
        s.Stall(starved[i], seconds(3));
        busy_until[i] = second + 6;
      }
    }
    s.RunFor(seconds(1));
  }
  s.RunFor(seconds(5));
  return {s.false_deaths() - fd0, s.suspicions_of_running() - su0, s.Converged()};
}

struct Quiet {
  double udp_bytes, udp_packets, tcp_bytes, total_bytes;
};

Quiet QuietRun(int n, uint64_t seed) {
  Simulator s({.seed = seed});
  Cluster(s, n);
  s.RunUntil([&] { return s.Converged(); }, seconds(120), StepFor(n));
  s.RunFor(seconds(60));  // let join news drain
  s.ResetTraffic();
  const double window = 300;
  s.RunFor(seconds(static_cast<int>(window)));
  auto t = s.TotalTraffic();
  double per = window * n;
  return {t.packet_bytes_sent / per, t.packets_sent / per, t.stream_bytes_sent / per,
          (t.packet_bytes_sent + t.stream_bytes_sent) / per};
}

const char* Memberlist(int n, const char* what) {
  struct Row {
    int n;
    const char *join, *crash, *quiet;
  };
  static const Row rows[] = {
      {5, "0.20 (max 0.20)", "5.98 (max 7.0)", "~98 B/s, 2.0 pkt/s"},
      {20, "0.60 (max 0.80)", "7.99 (max 9.8)", "~116 B/s, 2.0 pkt/s"},
      {50, "1.05, 1 of 5 runs > 60 s", "8.97 (max 10.9)", "~111 B/s, 2.0 pkt/s"},
  };
  for (const Row& r : rows) {
    if (r.n != n) continue;
    if (!std::strcmp(what, "join")) return r.join;
    if (!std::strcmp(what, "crash")) return r.crash;
    return r.quiet;
  }
  return "not measured";
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<int> sizes = {5, 10, 50, 100, 1000};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a.rfind("--sizes=", 0) == 0) {
      sizes.clear();
      std::string list = a.substr(8);
      for (size_t p = 0; p <= list.size();) {
        size_t q = list.find(',', p);
        if (q == std::string::npos) q = list.size();
        sizes.push_back(std::stoi(list.substr(p, q - p)));
        p = q + 1;
      }
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--sizes=5,10,50,100,1000]\n", argv[0]);
      return 2;
    }
  }
  auto real_start = std::chrono::steady_clock::now();
  std::printf("gossip_bench: simulator, LAN preset, virtual time (memberlist: real loopback, swim.md §2.2)\n\n");
  std::printf("| N | join: all see all, s median (max) | memberlist | crash: dead at all survivors, s median (max) | memberlist |\n");
  std::printf("|---|---|---|---|---|\n");
  for (int n : sizes) {
    const int runs = quick ? 2 : (n >= 1000 ? 2 : (n >= 100 ? 5 : 10));
    std::vector<double> join, crash;
    int join_fail = 0, crash_fail = 0;
    for (int r = 0; r < runs; ++r) {
      double j = JoinRun(n, 1000 + static_cast<uint64_t>(r));
      j < 0 ? ++join_fail : (join.push_back(j), 0);
      double c = CrashRun(n, 2000 + static_cast<uint64_t>(r));
      c < 0 ? ++crash_fail : (crash.push_back(c), 0);
    }
    std::printf("| %d | %.2f (%.2f)%s, %d runs | %s | %.2f (%.2f)%s, %d runs | %s |\n", n, Median(join), Max(join),
                join_fail ? " NOT CONVERGED in some" : "", runs, Memberlist(n, "join"), Median(crash), Max(crash),
                crash_fail ? " UNDETECTED in some" : "", runs, Memberlist(n, "crash"));
    std::fflush(stdout);
  }
  std::printf("\n| N | false deaths, 5%% loss, 120 s | 10%% loss | 10%% of nodes starved 3 s at random | (suspect events seen by any node: 5%% / 10%% / starved) |\n");
  std::printf("|---|---|---|---|---|\n");
  for (int n : sizes) {
    FpResult l5 = LossRun(n, 0.05, 3000 + static_cast<uint64_t>(n));
    FpResult l10 = LossRun(n, 0.10, 4000 + static_cast<uint64_t>(n));
    FpResult st = StarveRun(n, 5000 + static_cast<uint64_t>(n));
    std::printf("| %d | %llu | %llu | %llu | %llu / %llu / %llu |\n", n, (unsigned long long)l5.false_deaths,
                (unsigned long long)l10.false_deaths, (unsigned long long)st.false_deaths,
                (unsigned long long)l5.suspicions, (unsigned long long)l10.suspicions,
                (unsigned long long)st.suspicions);
    std::fflush(stdout);
  }
  std::printf("\nmemberlist, N=20: 0 suspicions at 10%% loss with TCP fallback; without it 19 suspicions, 0 false deaths\n");
  std::printf("\n| N | quiet cluster: B/s sent per node (UDP + TCP) | UDP pkt/s | UDP B/s | TCP B/s | memberlist |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (int n : sizes) {
    Quiet q = QuietRun(n, 6000 + static_cast<uint64_t>(n));
    std::printf("| %d | %.1f | %.2f | %.1f | %.1f | %s |\n", n, q.total_bytes, q.udp_packets, q.udp_bytes, q.tcp_bytes,
                Memberlist(n, "quiet"));
    std::fflush(stdout);
  }
  double real = std::chrono::duration<double>(std::chrono::steady_clock::now() - real_start).count();
  std::printf("\nreal time: %.1f s\n", real);
  return 0;
}
