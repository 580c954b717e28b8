// oklog_bench_single: the single-node end-to-end benchmark of issue 2.
//
// One run: probe the machine (dd with fdatasync; grep/rg over the corpus), generate 2,000,000
// ~100-byte records, start a fresh `oklog ingeststore` on free 127.0.0.1 ports, forward the
// corpus with the real `oklog forward`, time until every record is queryable, time queries over
// HTTP, measure ingest-to-queryable latency with markers, stop the node with SIGTERM, print one
// table. Every wait is bounded; the temp directory is removed at the end (unless --keep).
//
// Not a test: numbers vary with the (noisy, 2-vCPU) machine, so they are printed next to the
// machine's own limits measured in the same run.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/http_client.h"
#include "common/ulid.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/corpus.h"
#include "tools/bench/process.h"

namespace oklog::bench {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

struct Options {
  std::string oklog = "oklog";
  uint64_t records = 2'000'000;
  int runs = 5;
  int marker_seconds = 10;
  std::string tmp = "/tmp";
  bool keep = false;
};

// ---------------------------------------------------------------------------------------------
// Machine probes.

struct ScanTool {
  bool ok = false;
  Stats seconds;
  long long count = -1;  // the tool's -c output
};

// Times `tool args... file > out` (never /dev/null: GNU grep stops at the first match there),
// one warm-up plus runs.
ScanTool TimeScan(std::vector<std::string> argv, const std::string& file, const std::string& out, int runs) {
  ScanTool t;
  argv.insert(argv.begin(), {"env", "LC_ALL=C"});
  argv.push_back(file);
  std::vector<double> times;
  for (int i = 0; i <= runs; ++i) {
    ExitInfo e = RunCommand(argv, {.stdin_path = "", .stdout_path = out, .stderr_path = "", .cwd = ""},
                            milliseconds(60000));
    // grep -c exits 1 when the count is 0; that is still a valid run.
    if (!e.exited || e.timed_out || e.code > 1) return t;
    if (i > 0) times.push_back(e.wall_s);
  }
  t.count = std::atoll(ReadFileOrEmpty(out).c_str());
  t.seconds = Summarize(times);
  t.ok = true;
  return t;
}

// ---------------------------------------------------------------------------------------------
// Ingest-to-queryable latency: markers every 100 ms over one fast-port connection.

struct MarkerResult {
  bool ok = false;
  int sent = 0;
  int seen = 0;
  std::vector<double> latencies_s;
  int polls = 0;
};

MarkerResult RunMarkers(const NodeProcess& node, int seconds) {
  MarkerResult res;
  const int n = seconds * 10;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(node.fast_port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("marker connect");
    if (fd >= 0) close(fd);
    return res;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string tag = "benchmark-" + std::to_string(getpid()) + "-" + std::to_string(WallMs() % 100000) + "-";
  std::vector<Clock::time_point> sent_at(n);
  std::vector<uint64_t> sent_wall_ms(n);
  std::atomic<int> sent_count{0};
  std::atomic<bool> send_failed{false};
  std::thread sender([&] {
    auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      std::this_thread::sleep_until(start + milliseconds(100) * i);
      char line[128];
      int len = std::snprintf(line, sizeof line, "%s%05d INFO marker line for queryable latency\n", tag.c_str(), i);
      sent_wall_ms[i] = WallMs();
      sent_at[i] = Clock::now();
      if (send(fd, line, static_cast<size_t>(len), MSG_NOSIGNAL) != len) {
        send_failed = true;
        return;
      }
      sent_count.store(i + 1, std::memory_order_release);
    }
  });
  std::vector<std::optional<Clock::time_point>> seen_at(n);
  int seen = 0;
  Clock::time_point last_send_deadline = Clock::now() + milliseconds(100) * n + std::chrono::seconds(10);
  const std::string q = "q=" + UrlEncode(tag);
  while (seen < n && Clock::now() < last_send_deadline && !send_failed) {
    auto poll_start = Clock::now();
    int count = sent_count.load(std::memory_order_acquire);
    int oldest = -1;
    for (int i = 0; i < count; ++i) {
      if (!seen_at[i]) {
        oldest = i;
        break;
      }
    }
    if (oldest >= 0) {
      // One query per tick covers every outstanding marker: the shared tag, from one second
      // before the oldest unseen marker was sent (so the node scans only recent segments).
      std::string from = Ulid::MinAt(sent_wall_ms[oldest] - 1000).ToString();
      std::string body;
      QueryRun r = RunQuery(node.base(), "/store/query?from=" + from + "&" + q, [&](std::string_view c) { body.append(c); });
      auto now = Clock::now();
      res.polls++;
      if (r.ok) {
        for (size_t p = 0; (p = body.find(tag, p)) != std::string::npos; p += tag.size()) {
          int idx = std::atoi(body.c_str() + p + tag.size());
          if (idx >= 0 && idx < count && !seen_at[idx]) {
            seen_at[idx] = now;
            seen++;
          }
        }
      }
    }
    std::this_thread::sleep_until(poll_start + milliseconds(20));
  }
  sender.join();
  close(fd);
  res.sent = sent_count.load();
  res.seen = seen;
  for (int i = 0; i < res.sent; ++i) {
    if (seen_at[i]) res.latencies_s.push_back(std::chrono::duration<double>(*seen_at[i] - sent_at[i]).count());
  }
  res.ok = !send_failed && res.sent == n && seen == n;
  return res;
}

// ---------------------------------------------------------------------------------------------

int Run(const Options& opt) {
  ScratchDir scratch(opt.tmp, "oklog-bench", opt.keep);
  if (!scratch.ok()) {
    std::perror("mkdtemp");
    return 2;
  }
  const std::string dir = scratch.path();
  const std::string load_at_start = LoadAverage();
  auto step = [](const char* what) { std::fprintf(stderr, "[bench] %s\n", what); };
  int failures = 0;

  // 1. Corpus.
  step("generating corpus");
  const std::string corpus = dir + "/corpus.log";
  CorpusStats cs;
  if (!WriteCorpus({.records = opt.records}, corpus, &cs)) return 2;
  const double corpus_mb = static_cast<double>(cs.bytes) / 1e6;
  std::fprintf(stderr, "[bench] %" PRIu64 " records, %.1f MB, %.1f B/record\n", cs.records, corpus_mb,
               static_cast<double>(cs.bytes) / static_cast<double>(cs.records));

  // 2. Machine limits, in this run.
  step("probing disk (dd 1 GiB, conv=fdatasync)");
  DdResult dd = ProbeDisk(dir);
  step("timing grep / rg over the corpus");
  const std::string out = dir + "/scan.out";
  struct Pattern {
    const char* name;
    std::string q;
    bool regex;
  };
  const std::vector<Pattern> patterns = {{"needle (1 hit)", kNeedle, false},
                                         {"common (~10%)", kCommon, false},
                                         {"regex w/ literal", kRegexLiteral, true},
                                         {"regex no literal", kRegexNoLiteral, true},
                                         {"match-all", "", false}};
  std::vector<ScanTool> grep(patterns.size()), rg(patterns.size());
  for (size_t i = 0; i + 1 < patterns.size(); ++i) {
    const auto& p = patterns[i];
    grep[i] = TimeScan({"grep", p.regex ? "-E" : "-F", "-c", "--", p.q}, corpus, out, opt.runs);
    rg[i] = TimeScan(p.regex ? std::vector<std::string>{"rg", "-c", "--", p.q}
                             : std::vector<std::string>{"rg", "-F", "-c", "--", p.q},
                     corpus, out, opt.runs);
  }
  // match-all: the cost of reading every line (grep -c '' counts them all).
  grep.back() = TimeScan({"grep", "-c", ""}, corpus, out, opt.runs);
  rg.back() = TimeScan({"rg", "-c", ""}, corpus, out, opt.runs);
  fs::remove(out);

  // 3. Node + forward.
  step("starting oklog ingeststore");
  auto node = NodeProcess::Start(opt.oklog, "ingeststore", dir, {}, std::chrono::seconds(15));
  if (!node) {
    std::fprintf(stderr, "node did not start; node.err:\n%s\n", ReadFileOrEmpty(dir + "/node.err").c_str());
    return 2;
  }
  step("forwarding the corpus with oklog forward");
  const double cpu0 = ProcessCpuSeconds(node->child().pid()).value_or(0);
  const auto threads0 = ThreadCpuSeconds(node->child().pid());
  auto t0 = Clock::now();
  auto fwd = Child::Spawn({opt.oklog, "forward", "127.0.0.1:" + std::to_string(node->fast_port())},
                          {.stdin_path = corpus, .stdout_path = dir + "/forward.log",
                           .stderr_path = dir + "/forward.err", .cwd = ""});
  if (!fwd) return 2;
  std::optional<ExitInfo> fwd_exit;
  std::optional<double> t_ingested, t_stored, t_confirmed;
  uint64_t confirm_lines = 0;
  double confirm_query_s = 0;
  const auto deadline = t0 + std::chrono::seconds(180);
  while (Clock::now() < deadline) {
    if (!fwd_exit) fwd_exit = fwd->Poll();
    if (auto m = node->Metrics()) {
      double now = Since(t0);
      double ingested = MetricValue(*m, "oklog_ingest_writer_records_written_total").value_or(0);
      double stored = MetricValue(*m, "oklog_store_written_records_total").value_or(0);
      if (!t_ingested && ingested >= static_cast<double>(cs.records)) t_ingested = now;
      if (!t_stored && stored >= static_cast<double>(cs.records)) t_stored = now;
    }
    if (t_stored && fwd_exit) {
      // Confirm with a match-all count query: every record must come back.
      QueryRun all = RunQuery(node->base(), "/store/query?from=24h");
      if (all.ok && all.lines == cs.records) {
        t_confirmed = Since(t0);
        confirm_lines = all.lines;
        confirm_query_s = all.seconds;
        break;
      }
      std::fprintf(stderr, "[bench] confirm query returned %" PRIu64 " lines (status %d); retrying\n", all.lines,
                   all.status);
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  const double ingest_cpu = ProcessCpuSeconds(node->child().pid()).value_or(0) - cpu0;
  const std::string ingest_threads = ThreadCpuDelta(node->child().pid(), threads0, ThreadCpuSeconds(node->child().pid()));
  const std::string load_after_ingest = LoadAverage();
  if (!fwd_exit) fwd_exit = fwd->Wait(milliseconds(1000));
  if (!t_confirmed) {
    std::fprintf(stderr, "[bench] not all records became queryable within 180 s\n");
    failures++;
  }
  const double e2e_s = t_stored.value_or(NAN);
  const double e2e_rps = static_cast<double>(cs.records) / e2e_s;
  const double e2e_mbps = corpus_mb / e2e_s;
  const uint64_t store_bytes = DirBytes(dir + "/data/store");

  // 4. Query latency.
  step("query latency");
  std::vector<Stats> qstats(patterns.size());
  std::vector<uint64_t> qlines(patterns.size());
  std::vector<bool> qok(patterns.size(), true);
  for (size_t i = 0; i < patterns.size(); ++i) {
    const auto& p = patterns[i];
    std::string qs = "from=24h";
    if (!p.q.empty()) qs += "&q=" + UrlEncode(p.q);
    if (p.regex) qs += "&regex";
    std::vector<double> times;
    for (int r = 0; r <= opt.runs; ++r) {
      QueryRun run = RunQuery(node->base(), "/store/query?" + qs);
      if (!run.ok) qok[i] = false;
      qlines[i] = run.lines;
      if (r > 0) times.push_back(run.seconds);
    }
    qstats[i] = Summarize(times);
    // The same records must match as grep counts in the raw lines.
    if (grep[i].ok && static_cast<long long>(qlines[i]) != grep[i].count) qok[i] = false;
    if (!qok[i]) failures++;
  }

  // 5. Ingest-to-queryable latency.
  step("ingest-to-queryable latency (markers every 100 ms)");
  MarkerResult markers = RunMarkers(*node, opt.marker_seconds);
  if (!markers.ok) failures++;

  // 6. Stop.
  step("stopping the node (SIGTERM)");
  const double node_cpu_total = ProcessCpuSeconds(node->child().pid()).value_or(NAN);
  ExitInfo node_exit = node->Stop(std::chrono::seconds(65), std::chrono::seconds(5));
  if (!node_exit.Ok()) failures++;

  // 7. The table.
  const double lat_p50 = Percentile(markers.latencies_s, 50), lat_p99 = Percentile(markers.latencies_s, 99),
               lat_max = Percentile(markers.latencies_s, 100);
  std::printf("\n== oklog single-node benchmark: %" PRIu64 " records, %.1f MB (%.1f B/record), %d runs/query ==\n",
              cs.records, corpus_mb, static_cast<double>(cs.bytes) / static_cast<double>(cs.records), opt.runs);
  std::printf("\nMachine (this run; %ld CPUs; load average at start %s, after ingest %s)\n",
              sysconf(_SC_NPROCESSORS_ONLN), load_at_start.c_str(), load_after_ingest.c_str());
  std::printf("  %-34s %10.0f MB/s\n", "dd 1 GiB conv=fdatasync", dd.mb_per_s);
  std::printf("  %-34s %10.3f s  (%.2f GB/s)\n", "grep -F -c needle", grep[0].seconds.median,
              corpus_mb / 1e3 / grep[0].seconds.median);
  std::printf("  %-34s %10.3f s  (%.2f GB/s)\n", "rg -F -c needle", rg[0].seconds.median,
              corpus_mb / 1e3 / rg[0].seconds.median);

  std::printf("\nIngest: oklog forward -> fast port -> store, until queryable\n");
  std::printf("  %-34s %10.3f s\n", "end to end (all records stored)", e2e_s);
  std::printf("  %-34s %10.0f records/s\n", "end to end", e2e_rps);
  std::printf("  %-34s %10.1f MB/s   (%.2f x dd)\n", "end to end", e2e_mbps, e2e_mbps / dd.mb_per_s);
  std::printf("  %-34s %10.3f s\n", "all in ingest segments", t_ingested.value_or(NAN));
  std::printf("  %-34s %10.3f s (exit %d; cpu user %.2f s, sys %.2f s)\n", "oklog forward wall",
              fwd_exit ? fwd_exit->wall_s : NAN, fwd_exit ? fwd_exit->code : -1, fwd_exit ? fwd_exit->cpu_user_s : NAN,
              fwd_exit ? fwd_exit->cpu_sys_s : NAN);
  std::printf("  %-34s %10.3f s (match-all returned %" PRIu64 " lines in %.3f s)\n", "confirmed by count query",
              t_confirmed.value_or(NAN), confirm_lines, confirm_query_s);
  std::printf("  %-34s %10.2f s  (%.2f CPU-s/GB in)\n", "node CPU during ingest", ingest_cpu,
              ingest_cpu / (corpus_mb / 1e3));
  std::printf("  %-34s %s\n", "node CPU by thread during ingest", ingest_threads.c_str());
  std::printf("  %-34s %10.1f MB  (%.1f B/record, %.2fx smaller than raw)\n", "store on disk",
              static_cast<double>(store_bytes) / 1e6, static_cast<double>(store_bytes) / static_cast<double>(cs.records),
              static_cast<double>(cs.bytes) / static_cast<double>(store_bytes));

  std::printf("\nQuery latency over HTTP (whole body read), median [min..max] vs grep/rg on the raw file\n");
  std::printf("  %-18s %8s %22s %9s %9s %8s %8s %s\n", "query", "lines", "oklog ms", "grep ms", "rg ms", "grep/ok",
              "rg/ok", "check");
  for (size_t i = 0; i < patterns.size(); ++i) {
    char range[64];
    std::snprintf(range, sizeof range, "%.1f [%.1f..%.1f]", qstats[i].median * 1e3, qstats[i].min * 1e3,
                  qstats[i].max * 1e3);
    std::printf("  %-18s %8" PRIu64 " %22s %9.1f %9.1f %8.2f %8.2f %s\n", patterns[i].name, qlines[i], range,
                grep[i].seconds.median * 1e3, rg[i].seconds.median * 1e3, grep[i].seconds.median / qstats[i].median,
                rg[i].seconds.median / qstats[i].median, qok[i] ? "ok" : "MISMATCH/ERROR");
  }
  std::printf("  (grep/ok > 1 means oklog is faster; match-all compares with grep -c '' / rg -c '')\n");

  std::printf("\nIngest-to-queryable latency, default settings, idle node (%d markers, %d polls)\n", markers.sent,
              markers.polls);
  std::printf("  seen %d/%d   p50 %.0f ms   p99 %.0f ms   max %.0f ms\n", markers.seen, markers.sent, lat_p50 * 1e3,
              lat_p99 * 1e3, lat_max * 1e3);

  std::printf("\nNode exit after SIGTERM: %s (status %d, %.2f s; node CPU total %.2f s)\n",
              node_exit.Ok() ? "ok" : "FAILED", node_exit.code, node_exit.wall_s, node_cpu_total);

  std::printf("\nTargets (issue 2)\n");
  std::printf("  %-44s %12.0f  %s\n", ">= 1,400,000 records/s end to end", e2e_rps, PassMiss(e2e_rps >= 1.4e6));
  std::printf("  %-44s %9.1f ms  %s\n", "needle query median < 50 ms", qstats[0].median * 1e3,
              PassMiss(qstats[0].median < 0.050 && qok[0]));
  bool lat_pass = markers.ok && lat_max < 1.0;
  std::printf("  %-44s %9.0f ms  %s\n", "queryable within 1 s (max over markers)", lat_max * 1e3,
              PassMiss(lat_pass));
  std::printf("  %-44s %12.1fx\n", "vs OK Log's ~140,000 records/s", e2e_rps / 140000.0);
  std::printf("  %-44s %12.1fx\n", "needle vs OK Log's ~130 ms", 0.130 / qstats[0].median);
  if (failures > 0) std::printf("\n%d FAILURE(S): see above and stderr\n", failures);
  std::fflush(stdout);
  return failures > 0 ? 1 : 0;
}

bool ParseArgs(int argc, char** argv, Options* opt) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view name) -> std::optional<std::string> {
      if (a.substr(0, name.size()) == name && a.size() > name.size() && a[name.size()] == '=') {
        return std::string(a.substr(name.size() + 1));
      }
      return std::nullopt;
    };
    if (auto v = value("--oklog")) {
      opt->oklog = *v;
    } else if (auto v2 = value("--records")) {
      opt->records = std::strtoull(v2->c_str(), nullptr, 10);
    } else if (auto v3 = value("--runs")) {
      opt->runs = std::max(1, std::atoi(v3->c_str()));
    } else if (auto v4 = value("--marker-seconds")) {
      opt->marker_seconds = std::max(1, std::atoi(v4->c_str()));
    } else if (auto v5 = value("--tmp")) {
      opt->tmp = *v5;
    } else if (a == "--keep") {
      opt->keep = true;
    } else {
      std::fprintf(stderr,
                   "usage: oklog_bench_single [--oklog=PATH] [--records=N] [--runs=N] [--marker-seconds=S] "
                   "[--tmp=DIR] [--keep]\n");
      return false;
    }
  }
  return opt->records > 0;
}

}  // namespace
}  // namespace oklog::bench

int main(int argc, char** argv) {
  oklog::bench::Options opt;
  if (!oklog::bench::ParseArgs(argc, argv, &opt)) return 2;
  signal(SIGPIPE, SIG_IGN);
  return oklog::bench::Run(opt);
}
