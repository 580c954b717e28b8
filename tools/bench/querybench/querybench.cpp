// querybench: writes N records into a fresh store directory through SegmentWriter/StoreLog,
// then times queries through the QueryExecutor (scan, match, merge, text formatting into
// 64 KiB chunks) and, on the same record lines as raw text, `grep -F -c` and `rg -F -c`
// (output into a file: grep stops at the first match when its output is /dev/null).
//
//   querybench [-records 2000000] [-corpus-bytes 0] [-runs 5] [-threads 0] [-dir DIR] [-keep]
//
// -records N     N records of about 100 bytes ("ULID topic line"), each with a unique req= id.
// -corpus-bytes  instead, reference/performance.md Appendix A's corpus (JSON lines of ~375 B).
// The table gives, per query: matches, median/min/max ms over -runs runs after a warm-up,
// GB/s of record text, and grep/rg medians with our speed-up over each.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "common/metrics.h"
#include "query/matcher.h"
#include "query/query_executor.h"
#include "query/record_sink.h"
#include "segments/store_log.h"

namespace oklog {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct XorShift {
  uint64_t s[2] = {0x9E3779B97F4A7C15ULL, 0xD1B54A32D192ED03ULL};
  uint64_t Next() {
    uint64_t s1 = s[0];
    const uint64_t s0 = s[1];
    s[0] = s0;
    s1 ^= s1 << 23;
    s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return s[1] + s0;
  }
};

// ~100-byte lines: method, path, status, duration, a unique request id, user, message.
std::string SmallLine(XorShift& r, uint64_t i, std::string* topic) {
  static const char* kTopics[] = {"api", "web", "auth", "billing"};
  static const char* kMethods[] = {"GET", "GET", "GET", "POST", "PUT", "DELETE"};
  static const char* kMsgs[] = {"ok", "ok", "ok", "ok", "cache miss", "upstream timeout", "rate limited", "db slow"};
  uint64_t x = r.Next();
  *topic = kTopics[x % 4];
  unsigned st = (x >> 8) % 100 < 90 ? 200 : ((x >> 8) % 100 < 95 ? 404 : ((x >> 8) % 100 < 98 ? 500 : 302));
  char buf[256];
  int n = std::snprintf(buf, sizeof buf, "%s /api/v1/items/%u status=%u dur=%ums req=%016llx user=%u msg=%s",
                        kMethods[(x >> 16) % 6], static_cast<unsigned>((x >> 24) % 100000), st,
                        static_cast<unsigned>((x >> 40) % 900), static_cast<unsigned long long>(i * 0x9E3779B97F4A7C15ULL),
                        static_cast<unsigned>(r.Next() % 50000), kMsgs[(x >> 48) % 8]);
  return std::string(buf, static_cast<size_t>(n));
}

// reference/performance.md Appendix A, one line (without ULID and newline).
std::string CorpusLine(XorShift& r, uint64_t ms, std::string* topic) {
  static const char* svc[] = {"api-gateway", "auth", "billing", "catalog", "checkout", "search", "inventory", "notifier"};
  static const char* meth[] = {"GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"};
  static const char* paths[] = {"/api/v1/login",        "/api/v1/users/%u",        "/api/v1/orders/%u",
                                "/api/v1/items/%u/reviews", "/healthz",          "/api/v2/search?q=item%u",
                                "/static/js/app.%u.js", "/api/v1/cart/%u/checkout"};
  static const char* lvl[] = {"info", "info", "info", "info", "info", "info", "warn", "error", "debug", "info"};
  static const char* ua[] = {
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
      "curl/8.4.0", "Go-http-client/1.1", "okhttp/4.12.0",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"};
  static const char* msg[] = {"request completed", "request completed", "request completed", "upstream timeout",
                              "cache miss",        "token refreshed",   "rate limited",      "db query slow"};
  uint64_t t = ms / 1000;
  int msec = static_cast<int>(ms % 1000);
  int H = static_cast<int>((t / 3600) % 24), M = static_cast<int>((t / 60) % 60), S = static_cast<int>(t % 60);
  unsigned x = static_cast<unsigned>(r.Next());
  int pi = static_cast<int>(x % 8);
  char path[128];
  std::snprintf(path, sizeof path, paths[pi], static_cast<unsigned>(r.Next() % 100000));
  int st = (x >> 8) % 100 < 90 ? 200 : ((x >> 8) % 100 < 95 ? 404 : ((x >> 8) % 100 < 98 ? 500 : 302));
  *topic = svc[(x >> 12) % 8];
  char line[1024];
  unsigned host = static_cast<unsigned>(r.Next() % 40), a = static_cast<unsigned>(r.Next() % 256),
           b = static_cast<unsigned>(r.Next() % 256), c = static_cast<unsigned>(r.Next() % 256),
           port = static_cast<unsigned>(1024 + r.Next() % 60000);
  unsigned bytes = static_cast<unsigned>(r.Next() % 200000), d1 = static_cast<unsigned>(r.Next() % 900),
           d2 = static_cast<unsigned>(r.Next() % 1000);
  unsigned long long rid = r.Next();
  unsigned uid = static_cast<unsigned>(r.Next() % 50000);
  int n = std::snprintf(line, sizeof line,
                        "{\"ts\":\"2023-11-14T%02d:%02d:%02d.%03dZ\",\"level\":\"%s\",\"service\":\"%s\","
                        "\"host\":\"node-%02u\",\"remote_addr\":\"10.%u.%u.%u:%u\",\"method\":\"%s\",\"path\":\"%s\","
                        "\"status\":%d,\"bytes\":%u,\"duration_ms\":%u.%03u,\"request_id\":\"%016llx\",\"user_id\":%u,"
                        "\"user_agent\":\"%s\",\"msg\":\"%s\"}",
                        H, M, S, msec, lvl[(x >> 3) % 10], svc[(x >> 12) % 8], host, a, b, c, port, meth[(x >> 16) % 8],
                        path, st, bytes, d1, d2, rid, uid, ua[(x >> 20) % 5], msg[(x >> 24) % 8]);
  return std::string(line, static_cast<size_t>(std::min(n, static_cast<int>(sizeof line) - 1)));
}

struct Query {
  std::string name;
  std::string q;
  MatchMode mode;
  std::string grep_args;  // flags and pattern for grep and rg ("" = not comparable)
  std::string rg_args;
};

// Counts and drops the formatted output, as a socket that keeps up would.
struct CountingEmit {
  uint64_t bytes = 0;
  bool operator()(const std::string& chunk) {
    bytes += chunk.size();
    return true;
  }
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double TimeCommand(const std::string& cmd, int runs) {
  std::vector<double> t;
  for (int i = 0; i <= runs; ++i) {
    auto t0 = Clock::now();
    int rc = std::system(cmd.c_str());
    double ms = Ms(Clock::now() - t0);
    if (rc != 0 && rc != 256) return -1;  // grep/rg exit 1 when nothing matched
    if (i > 0) t.push_back(ms);
  }
  return Median(t);
}

int Main(int argc, char** argv) {
  FlagSet fs("querybench");
  int64_t records = 2000000, corpus_bytes = 0, runs = 5, threads = 0, segment_mib = 64;
  std::string dir;
  bool keep = false, reuse = false, no_tools = false;
  std::string only;
  fs.Int("records", &records, "records of ~100 bytes to write");
  fs.Int("corpus-bytes", &corpus_bytes, "write this many bytes of the Appendix A corpus instead");
  fs.Int("runs", &runs, "timed runs per query (after one warm-up)");
  fs.Int("threads", &threads, "scan threads (0: one per core)");
  fs.Int("segment-mib", &segment_mib, "raw MiB per store segment");
  fs.String("dir", &dir, "work directory (default: a new one under /tmp)");
  fs.Bool("keep", &keep, "keep the work directory");
  fs.Bool("reuse", &reuse, "reuse the store and raw.log in -dir (written by an earlier -keep run)");
  fs.Bool("no-tools", &no_tools, "skip grep and rg");
  fs.String("only", &only, "run only the queries whose name contains this");
  auto parsed = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n%s", parsed.status().ToString().c_str(), fs.Usage().c_str());
    return parsed.status().code() == Code::kNotFound ? 0 : 2;
  }
  SetLogLevel("warn");
  if (dir.empty()) {
    std::string tmpl = "/tmp/querybench_XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) return 1;
    dir = tmpl;
  }
  const std::string store_dir = dir + "/store", raw_path = dir + "/raw.log", out_path = dir + "/grep_out.txt";
  Registry metrics;

  // 1. Write the records.
  std::string needle;
  uint64_t raw_bytes = 0, n_records = 0;
  if (reuse) {
    std::ifstream raw(raw_path, std::ios::binary);
    std::string line;
    while (std::getline(raw, line)) {
      raw_bytes += line.size() + 1;
      if (n_records++ == 1234567 % (corpus_bytes > 0 ? 100000 : static_cast<uint64_t>(records))) {
        size_t at = line.find(corpus_bytes > 0 ? "request_id\":\"" : "req=");
        needle = line.substr(at + (corpus_bytes > 0 ? 13 : 4), 16);
      }
    }
    keep = true;
  } else {
    auto store = StoreLog::Open(store_dir, StoreLogOptions{}, &metrics);
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
      return 1;
    }
    std::ofstream raw(raw_path, std::ios::binary);
    XorShift rng;
    uint64_t ms = 1700000000000ULL;
    std::unique_ptr<SegmentWriter> w;
    auto t0 = Clock::now();
    std::string rec, topic, buf;
    const uint64_t target = corpus_bytes > 0 ? static_cast<uint64_t>(corpus_bytes) : 0;
    for (uint64_t i = 0; target ? raw_bytes < target : i < static_cast<uint64_t>(records); ++i) {
      ms += rng.Next() % 3 == 0;
      Ulid u = Ulid::FromParts(ms, static_cast<uint16_t>(i >> 48), i);
      std::string line = target ? CorpusLine(rng, ms, &topic) : SmallLine(rng, i, &topic);
      rec = u.ToString() + " " + topic + " " + line + "\n";
      if (!w) {
        auto nw = store.value()->NewWriter();
        if (!nw.ok()) return 1;
        w = std::move(nw).value();
      }
      Status s = w->Append(rec);
      if (!s.ok()) {
        std::fprintf(stderr, "append: %s\n", s.ToString().c_str());
        return 1;
      }
      buf += rec;
      if (buf.size() > (1 << 20)) {
        raw.write(buf.data(), static_cast<std::streamsize>(buf.size()));
        buf.clear();
      }
      raw_bytes += rec.size();
      ++n_records;
      if (i == 1234567 % (target ? 100000 : static_cast<uint64_t>(records))) {
        // The needle: this record's unique id.
        size_t at = line.find(target ? "request_id\":\"" : "req=");
        needle = line.substr(at + (target ? 13 : 4), 16);
      }
      if (w->raw_bytes() >= static_cast<uint64_t>(segment_mib) << 20) {
        auto path = w->Finish();
        if (!path.ok() || !store.value()->Add(path.value()).ok()) return 1;
        w.reset();
      }
    }
    if (w) {
      auto path = w->Finish();
      if (!path.ok() || !store.value()->Add(path.value()).ok()) return 1;
    }
    raw.write(buf.data(), static_cast<std::streamsize>(buf.size()));
    double secs = Ms(Clock::now() - t0) / 1000;
    std::printf("wrote %llu records, %.1f MB of record text, in %.2f s (%.0f records/s, %.0f MB/s incl. generation)\n",
                static_cast<unsigned long long>(n_records), raw_bytes / 1e6, secs, n_records / secs,
                raw_bytes / 1e6 / secs);
  }

  // 2. Reopen, as a node would at start (verifying every block).
  auto t_open = Clock::now();
  auto store = StoreLog::Open(store_dir, StoreLogOptions{}, &metrics);
  if (!store.ok()) return 1;
  uint64_t file_bytes = store.value()->file_bytes();
  size_t blocks = 0;
  for (const auto& s : store.value()->All()) blocks += s->blocks().size();
  std::printf("store: %zu segments, %zu blocks, %.1f MB on disk (ratio %.2f), opened+verified in %.0f ms\n",
              store.value()->segment_count(), blocks, file_bytes / 1e6,
              static_cast<double>(raw_bytes) / static_cast<double>(file_bytes), Ms(Clock::now() - t_open));

  const bool corpus = corpus_bytes > 0;
  std::vector<Query> queries = {
      {"needle (1 hit)", needle, MatchMode::kSubstring, "-F -c " + needle, "-F -c " + needle},
      {"absent literal", "deadbeefcafe", MatchMode::kSubstring, "-F -c deadbeefcafe", "-F -c deadbeefcafe"},
      {"common literal", "upstream timeout", MatchMode::kSubstring, "-F -c 'upstream timeout'",
       "-F -c 'upstream timeout'"},
      {"(?i) literal", "(?i)UPSTREAM TIMEOUT", MatchMode::kRegex, "-i -F -c 'UPSTREAM TIMEOUT'",
       "-i -F -c 'UPSTREAM TIMEOUT'"},
      {"regex w/ literal", corpus ? "\"status\":5[0-9][0-9]" : "status=5[0-9][0-9]", MatchMode::kRegex,
       corpus ? "-E -c '\"status\":5[0-9][0-9]'" : "-E -c 'status=5[0-9][0-9]'",
       corpus ? "-c '\"status\":5[0-9][0-9]'" : "-c 'status=5[0-9][0-9]'"},
      {"alternation", "(rate limited|db slow|db query slow)", MatchMode::kRegex,
       "-E -c '(rate limited|db slow|db query slow)'", "-c '(rate limited|db slow|db query slow)'"},
      {"no-literal regex", corpus ? "\"user_id\":4[0-9]{4}," : "user=4[0-9]{4} ", MatchMode::kRegex,
       corpus ? "-E -c '\"user_id\":4[0-9]{4},'" : "-E -c 'user=4[0-9]{4} '",
       corpus ? "-c '\"user_id\":4[0-9]{4},'" : "-c 'user=4[0-9]{4} '"},
      {"match all", "", MatchMode::kSubstring, "", ""},
  };

  QueryExecutor::Options eo;
  eo.scan_threads = static_cast<size_t>(threads);
  QueryExecutor ex(eo, &metrics);
  std::printf("\nqueries through the executor (%zu scan threads + the driver), text output counted in 64 KiB "
              "chunks; grep/rg over %s (LC_ALL=C, output to a file), rg -j%zu; median of %lld runs\n\n",
              ex.scan_threads(), raw_path.c_str(), ex.scan_threads(), static_cast<long long>(runs));
  std::printf("%-18s %9s %9s %9s %9s %8s %8s %9s %9s %8s %8s\n", "query", "matches", "ms", "min", "max", "GB/s",
              "blocks", "grep ms", "rg ms", "x grep", "x rg");
  for (const Query& q : queries) {
    if (!only.empty() && q.name.find(only) == std::string::npos) continue;
    auto m = Matcher::Create({q.q, q.mode, {}});
    if (!m.ok()) {
      std::fprintf(stderr, "%s: %s\n", q.name.c_str(), m.status().ToString().c_str());
      continue;
    }
    std::vector<double> times;
    ScanStats stats;
    for (int64_t i = 0; i <= runs; ++i) {
      ScanRequest req;
      req.from = Ulid::MinAt(0);
      req.to = Ulid::Max();
      auto t0 = Clock::now();
      req.segments = store.value()->Select(req.from, req.to);
      CountingEmit emit;
      ChunkingSink sink(OutputFormat::kText, 64 << 10, std::chrono::milliseconds(20),
                        [&emit](std::string c) { return emit(c); });
      std::atomic<bool> cancel{false};
      Status s = ex.Run(req, *m.value(), &sink, cancel, &stats);
      (void)sink.Flush();
      double ms = Ms(Clock::now() - t0);
      if (!s.ok()) std::fprintf(stderr, "%s: %s\n", q.name.c_str(), s.ToString().c_str());
      if (i > 0) times.push_back(ms);
    }
    double med = Median(times);
    double grep_ms = -1, rg_ms = -1;
    if (!q.grep_args.empty() && !no_tools) {
      grep_ms = TimeCommand("LC_ALL=C grep " + q.grep_args + " " + raw_path + " > " + out_path, static_cast<int>(runs));
      rg_ms = TimeCommand("LC_ALL=C rg -j" + std::to_string(ex.scan_threads()) + " " + q.rg_args + " " + raw_path +
                              " > " + out_path,
                          static_cast<int>(runs));
    }
    auto fmt = [](double v) {
      char b[32];
      if (v < 0) return std::string("-");
      std::snprintf(b, sizeof b, "%.1f", v);
      return std::string(b);
    };
    std::printf("%-18s %9llu %9.1f %9.1f %9.1f %8.2f %4llu/%-4llu %9s %9s %8s %8s\n", q.name.c_str(),
                static_cast<unsigned long long>(stats.records), med, *std::min_element(times.begin(), times.end()),
                *std::max_element(times.begin(), times.end()), raw_bytes / 1e6 / med,
                static_cast<unsigned long long>(stats.blocks_read), static_cast<unsigned long long>(blocks),
                fmt(grep_ms).c_str(), fmt(rg_ms).c_str(), grep_ms > 0 ? fmt(grep_ms / med).c_str() : "-",
                rg_ms > 0 ? fmt(rg_ms / med).c_str() : "-");
    std::fflush(stdout);
  }
  std::printf("\nGB/s = record text (%.1f MB) / median time; blocks = read/total (the rest pruned by the block "
              "filter).\n",
              raw_bytes / 1e6);
  if (!keep) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  } else {
    std::printf("kept %s\n", dir.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace oklog

int main(int argc, char** argv) { return oklog::Main(argc, argv); }
