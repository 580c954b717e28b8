// storagebench: the storage issue's benchmark in one run.
//
//   storagebench [-bytes 1500000000] [-runs 3] [-dir DIR] [-keep] [-reuse] [-only NAME]
//                [-trickle-bytes 402653184] [-trickle-segment-bytes 1048576]
//
// -keep leaves DIR/store and DIR/raw.txt; a later run with -dir DIR -reuse queries them again
// without regenerating (no bytes-on-disk row). -only runs the queries whose name contains NAME.
//
// 1. Generates reference/performance.md Appendix A's corpus (same PRNG and line shapes, written
//    again in C++) as store records "ULID SP topic SP json LF", and writes them through
//    SegmentWriter/StoreLog into one store directory (segments of 128 MiB of records, the
//    default target size), and the same bytes into raw.txt.
// 2. Bytes on disk against `lz4 -1` of raw.txt (same 256 KiB independent blocks, and lz4's
//    default 4 MiB blocks).
// 3. Seven queries through the real query path (QueryExecutor over StoreLog::Select, records
//    written to a file), and in the same run `rg` and `grep` printing the same matches from
//    raw.txt into a file (never /dev/null); the outputs are compared byte for byte. "ours cpu"
//    is the CPU time of all our threads (rg searches one file on one thread whatever -j says,
//    so on a busy machine the wall-clock ratio moves towards the CPU ratio).
// 4. Compaction write amplification over a long trickle of small segments (OK Log #132):
//    bytes the Compactor wrote per byte ingested, with the default 128 MiB target.
// A table with ratios and the targets (PASS/MISS) ends the output.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/metrics.h"
#include "query/matcher.h"
#include "query/query_executor.h"
#include "query/record_sink.h"
#include "segments/compactor.h"
#include "segments/store_log.h"

namespace oklog {
namespace {

using Clock = std::chrono::steady_clock;
double Secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// CPU seconds (user + system) of this process's threads so far; children are not counted.
double CpuSecs() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// Appendix A's generator: xorshift128+, the same tables and line format.
class Corpus {
 public:
  // Appends one record to out; returns its request id (16 hex).
  uint64_t Next(std::string* out) {
    ms_ += (Rnd() % 3 == 0);
    uint64_t t = ms_ / 1000;
    int msec = static_cast<int>(ms_ % 1000);
    int H = static_cast<int>((t / 3600) % 24), M = static_cast<int>((t / 60) % 60), S = static_cast<int>(t % 60);
    char ulid[Ulid::kTextSize];
    Ulid::FromParts(ms_, 0x5eed, counter_++).Encode(ulid);
    unsigned r = static_cast<unsigned>(Rnd());
    int pi = static_cast<int>(r % 8);
    char path[128];
    std::snprintf(path, sizeof path, kPaths[pi], static_cast<unsigned>(Rnd() % 100000));
    int st = (r >> 8) % 100 < 90 ? 200 : ((r >> 8) % 100 < 95 ? 404 : ((r >> 8) % 100 < 98 ? 500 : 302));
    // Argument evaluation order is unspecified in C++: draw in Appendix A's order explicitly.
    unsigned host = static_cast<unsigned>(Rnd() % 40), a = static_cast<unsigned>(Rnd() % 256),
             b = static_cast<unsigned>(Rnd() % 256), c = static_cast<unsigned>(Rnd() % 256),
             port = static_cast<unsigned>(1024 + Rnd() % 60000), bytes = static_cast<unsigned>(Rnd() % 200000),
             d1 = static_cast<unsigned>(Rnd() % 900), d2 = static_cast<unsigned>(Rnd() % 1000);
    uint64_t rid = Rnd();
    unsigned user = static_cast<unsigned>(Rnd() % 50000);
    char line[1024];
    int len = std::snprintf(
        line, sizeof line,
        "%.26s app {\"ts\":\"2023-11-14T%02d:%02d:%02d.%03dZ\",\"level\":\"%s\",\"service\":\"%s\","
        "\"host\":\"node-%02u\",\"remote_addr\":\"10.%u.%u.%u:%u\",\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,"
        "\"bytes\":%u,\"duration_ms\":%u.%03u,\"request_id\":\"%016llx\",\"user_id\":%u,\"user_agent\":\"%s\","
        "\"msg\":\"%s\"}\n",
        ulid, H, M, S, msec, kLevels[(r >> 3) % 10], kServices[(r >> 12) % 8], host, a, b, c, port,
        kMethods[(r >> 16) % 8], path, st, bytes, d1, d2, static_cast<unsigned long long>(rid), user,
        kAgents[(r >> 20) % 5], kMessages[(r >> 24) % 8]);
    out->append(line, static_cast<size_t>(len));
    return rid;
  }

 private:
  uint64_t Rnd() {
    uint64_t s1 = s_[0];
    const uint64_t s0 = s_[1];
    s_[0] = s0;
    s1 ^= s1 << 23;
    s_[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return s_[1] + s0;
  }
  static constexpr const char* kServices[] = {"api-gateway", "auth",   "billing",   "catalog",
                                              "checkout",    "search", "inventory", "notifier"};
  static constexpr const char* kMethods[] = {"GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"};
  static constexpr const char* kPaths[] = {"/api/v1/login",         "/api/v1/users/%u",       "/api/v1/orders/%u",
                                           "/api/v1/items/%u/reviews", "/healthz",            "/api/v2/search?q=item%u",
                                           "/static/js/app.%u.js",  "/api/v1/cart/%u/checkout"};
  static constexpr const char* kLevels[] = {"info", "info", "info", "info",  "info",
                                            "info", "warn", "error", "debug", "info"};
  static constexpr const char* kAgents[] = {
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
      "curl/8.4.0", "Go-http-client/1.1", "okhttp/4.12.0",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"};
  static constexpr const char* kMessages[] = {"request completed", "request completed", "request completed",
                                              "upstream timeout",  "cache miss",        "token refreshed",
                                              "rate limited",      "db query slow"};
  uint64_t s_[2] = {0x9E3779B97F4A7C15ULL, 0xD1B54A32D192ED03ULL};
  uint64_t ms_ = 1700000000000ULL;
  uint64_t counter_ = 0;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "storagebench: %s\n", what.c_str());
  std::exit(1);
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

// Writes the records of buf (sorted) as segments, split at target raw bytes.
uint64_t WriteSegments(StoreLog* store, std::string_view buf, uint64_t target) {
  uint64_t file_bytes = 0;
  size_t pos = 0;
  while (pos < buf.size()) {
    auto w = store->NewWriter();
    Check(w.status(), "writer");
    while (pos < buf.size() && (*w)->raw_bytes() < target) {
      size_t end = buf.find('\n', pos) + 1;
      Check((*w)->Append(buf.substr(pos, end - pos)), "append");
      pos = end;
    }
    auto path = (*w)->Finish();
    Check(path.status(), "finish");
    Check(store->Add(*path), "add");
    file_bytes += std::filesystem::file_size(*path);
  }
  return file_bytes;
}

double TimeShell(const std::string& cmd) {
  auto t0 = Clock::now();
  int rc = std::system(cmd.c_str());
  double s = Secs(Clock::now() - t0);
  if (rc == -1 || (WEXITSTATUS(rc) != 0 && WEXITSTATUS(rc) != 1)) Die("command failed: " + cmd);
  return s;
}

uint64_t CountLines(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return 0;
  static char buf[1 << 20];
  uint64_t n = 0;
  for (size_t got; (got = std::fread(buf, 1, sizeof buf, f)) > 0;) n += std::count(buf, buf + got, '\n');
  std::fclose(f);
  return n;
}

bool SameFile(const std::string& a, const std::string& b) {
  return std::system(("cmp -s " + a + " " + b).c_str()) == 0;
}

// Records to a file, as a client's response body would be written, in 1 MiB writes.
class FileSink : public RecordSink {
 public:
  explicit FileSink(const std::string& path) : f_(std::fopen(path.c_str(), "wb")) {
    if (!f_) Die("open " + path);
    buf_.reserve(1 << 20);
  }
  ~FileSink() override { Close(); }
  bool Add(std::string_view r) override {
    buf_.append(r);
    ++records_;
    if (buf_.size() >= (1 << 20)) Flush();
    return true;
  }
  void Close() {
    if (!f_) return;
    Flush();
    std::fclose(f_);
    f_ = nullptr;
  }
  uint64_t records() const { return records_; }

 private:
  void Flush() {
    std::fwrite(buf_.data(), 1, buf_.size(), f_);
    buf_.clear();
  }
  FILE* f_;
  std::string buf_;
  uint64_t records_ = 0;
};

struct Query {
  const char* name;
  std::string q;  // ours
  MatchMode mode;
  std::string rg_args;    // flags and pattern
  std::string grep_args;
  double target;          // required speed vs rg (rg time / our time), 0: none
};

struct Row {
  std::string name, value, target;
  bool pass;
  bool has_target;
};

int Main(int argc, char** argv) {
  uint64_t bytes = 1500000000, trickle_bytes = 384ull << 20, trickle_segment = 1 << 20;
  int runs = 3;
  std::string dir;
  bool keep = false, reuse = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value for " + a);
      return argv[++i];
    };
    if (a == "-bytes") bytes = std::stoull(val());
    else if (a == "-runs") runs = std::stoi(val());
    else if (a == "-dir") dir = val();
    else if (a == "-keep") keep = true;
    else if (a == "-reuse") reuse = true;
    else if (a == "-only") only = val();
    else if (a == "-trickle-bytes") trickle_bytes = std::stoull(val());
    else if (a == "-trickle-segment-bytes") trickle_segment = std::stoull(val());
    else Die("unknown flag " + a + " (see the comment at the top of storagebench.cpp)");
  }
  Logger("store")->set_level(spdlog::level::warn);
  if (reuse && dir.empty()) Die("-reuse needs -dir");
  if (reuse) keep = true;
  if (dir.empty()) {
    std::string tmpl = std::filesystem::temp_directory_path().string() + "/storagebench_XXXXXX";
    if (!mkdtemp(tmpl.data())) Die("mkdtemp");
    dir = tmpl;
  }
  std::filesystem::create_directories(dir);
  const std::string store_dir = dir + "/store", raw_path = dir + "/raw.txt";
  std::vector<Row> rows;
  auto row = [&](std::string name, std::string value, std::string target = "", bool pass = true) {
    rows.push_back({std::move(name), std::move(value), target, pass, !target.empty()});
  };
  char tmp[256];

  // 1. Ingest.
  Registry metrics;
  auto store_r = StoreLog::Open(store_dir, {}, &metrics);
  Check(store_r.status(), "store");
  auto store = std::move(store_r).value();
  const uint64_t target = 128ull << 20;
  Corpus corpus;
  std::string seg;
  seg.reserve(target + (1 << 20));
  uint64_t total = 0, records = 0, store_bytes = 0, one_hit_id = 0;
  const uint64_t one_hit_index = bytes / 375 / 2;  // a record in the middle of the corpus
  if (reuse) {
    // The same -bytes gives the same one-hit record: replay the generator up to it.
    while (records < one_hit_index) {
      seg.clear();
      one_hit_id = corpus.Next(&seg);
      ++records;
    }
    std::printf("reusing %s (%zu segments) and %s\n", store_dir.c_str(), store->segment_count(), raw_path.c_str());
  } else {
    FILE* raw = std::fopen(raw_path.c_str(), "wb");
    if (!raw) Die("open raw.txt");
    double write_s = 0;
    while (total < bytes) {
      seg.clear();
      while (seg.size() < target && total + seg.size() < bytes) {
        uint64_t id = corpus.Next(&seg);
        if (++records == one_hit_index) one_hit_id = id;
      }
      std::fwrite(seg.data(), 1, seg.size(), raw);
      auto t0 = Clock::now();
      store_bytes += WriteSegments(store.get(), seg, target);
      write_s += Secs(Clock::now() - t0);
      total += seg.size();
    }
    std::fclose(raw);
    std::printf("corpus: %.2f GB, %llu records (%.1f B/record), %zu segments in %s\n", total / 1e9,
                static_cast<unsigned long long>(records), double(total) / double(records), store->segment_count(),
                store_dir.c_str());
    std::printf("store write (SegmentWriter: LZ4, filter, fsync): %.2f s, %.0f MB/s of records\n", write_s,
                total / 1e6 / write_s);

    // 2. Bytes on disk against lz4 -1.
    std::string lz4_256k = dir + "/raw.B5.lz4", lz4_default = dir + "/raw.lz4";
    double lz4_s = TimeShell("lz4 -q -f -1 -B5 -BI " + raw_path + " " + lz4_256k);
    TimeShell("lz4 -q -f -1 " + raw_path + " " + lz4_default);
    const uint64_t lz4_b5 = std::filesystem::file_size(lz4_256k), lz4_def = std::filesystem::file_size(lz4_default);
    std::printf("bytes: store %llu, lz4 -1 -B5 (256 KiB blocks) %llu (%.1f s), lz4 -1 (4 MiB) %llu\n",
                static_cast<unsigned long long>(store_bytes), static_cast<unsigned long long>(lz4_b5), lz4_s,
                static_cast<unsigned long long>(lz4_def));
    std::filesystem::remove(lz4_256k);
    std::filesystem::remove(lz4_default);
    double size_ratio = double(store_bytes) / double(lz4_b5);
    std::snprintf(tmp, sizeof tmp, "%.3f x lz4 -1 -B5 (%.3f x lz4 -1 default), %.1f B/record", size_ratio,
                  double(store_bytes) / double(lz4_def), double(store_bytes) / double(records));
    row("bytes on disk", tmp, "<= 1.05", size_ratio <= 1.05);
  }

  // 3. Queries.
  char rid[17];
  std::snprintf(rid, sizeof rid, "%016llx", static_cast<unsigned long long>(one_hit_id));
  const std::string alt = "\"user_id\":12345,|\"user_id\":23456,|\"user_id\":34567,";
  std::vector<Query> queries = {
      {"absent literal", "deadbeefcafebabe", MatchMode::kSubstring, "-F -e deadbeefcafebabe", "-F -e deadbeefcafebabe",
       1.0},
      {"one-hit literal", rid, MatchMode::kSubstring, std::string("-F -e ") + rid, std::string("-F -e ") + rid, 1.0},
      {"12% literal", "upstream timeout", MatchMode::kSubstring, "-F -e 'upstream timeout'", "-F -e 'upstream timeout'",
       0.5},
      {"case-insensitive literal", "(?i)RATE LIMITED", MatchMode::kRegex, "-i -F -e 'RATE LIMITED'",
       "-i -F -e 'RATE LIMITED'", 0},
      {"regex with a literal", "\"status\":5[0-9][0-9]", MatchMode::kRegex, "-e '\"status\":5[0-9][0-9]'",
       "-E -e '\"status\":5[0-9][0-9]'", 0.5},
      {"alternation", alt, MatchMode::kRegex, "-e '" + alt + "'", "-E -e '" + alt + "'", 0},
      {"regex, no literal", "[a-f]{6}[0-9]{6}", MatchMode::kRegex, "-e '[a-f]{6}[0-9]{6}'", "-E -e '[a-f]{6}[0-9]{6}'",
       0},
  };
  QueryExecutor exec({}, &metrics);
  std::printf("\nqueries: %d runs each after a warm-up, median; ours: %zu scan threads; rg -j%zu; grep single-threaded\n",
              runs, exec.scan_threads(), exec.scan_threads());
  std::printf("%-26s %10s %9s %9s %9s %9s %8s %8s %6s\n", "query", "matches", "ours ms", "ours cpu", "rg ms",
              "grep ms", "rg/ours", "grep/ours", "same");
  for (const auto& q : queries) {
    if (!only.empty() && std::string(q.name).find(only) == std::string::npos) continue;
    auto m = Matcher::Create({q.q, q.mode, {}});
    Check(m.status(), q.name);
    std::vector<double> ours, ours_cpu, rg, grep;
    uint64_t matches = 0;
    ScanStats stats;
    const std::string ours_out = dir + "/out.ours", rg_out = dir + "/out.rg", grep_out = dir + "/out.grep";
    for (int i = 0; i <= runs; ++i) {
      auto t0 = Clock::now();
      const double cpu0 = CpuSecs();
      {
        FileSink sink(ours_out);
        ScanRequest req;
        req.segments = store->Select(Ulid(), Ulid::Max());
        req.from = Ulid();
        req.to = Ulid::Max();
        std::atomic<bool> cancel{false};
        stats = ScanStats{};
        Check(exec.Run(req, **m, &sink, cancel, &stats), q.name);
        sink.Close();
        matches = sink.records();
      }
      double t_ours = Secs(Clock::now() - t0);
      double cpu_ours = CpuSecs() - cpu0;
      double t_rg = TimeShell("LC_ALL=C rg -j" + std::to_string(exec.scan_threads()) +
                              " --no-filename --no-line-number " + q.rg_args + " " + raw_path + " > " + rg_out);
      double t_grep = TimeShell("LC_ALL=C grep " + q.grep_args + " " + raw_path + " > " + grep_out);
      if (i == 0) continue;  // warm-up
      ours.push_back(t_ours);
      ours_cpu.push_back(cpu_ours);
      rg.push_back(t_rg);
      grep.push_back(t_grep);
    }
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    double mo = median(ours), mc = median(ours_cpu), mr = median(rg), mg = median(grep);
    bool same = SameFile(ours_out, rg_out) && SameFile(ours_out, grep_out);
    std::printf("%-26s %10llu %9.1f %9.1f %9.1f %9.1f %8.2f %8.2f %6s   blocks read %llu skipped %llu\n", q.name,
                static_cast<unsigned long long>(matches), mo * 1e3, mc * 1e3, mr * 1e3, mg * 1e3, mr / mo, mg / mo,
                same ? "yes" : "NO", static_cast<unsigned long long>(stats.blocks_read),
                static_cast<unsigned long long>(stats.blocks_skipped));
    if (!same)
      std::printf("    rg printed %llu lines, grep %llu\n", static_cast<unsigned long long>(CountLines(rg_out)),
                  static_cast<unsigned long long>(CountLines(grep_out)));
    std::snprintf(tmp, sizeof tmp, "%.1f ms vs rg %.1f ms: %.2f x rg speed%s", mo * 1e3, mr * 1e3, mr / mo,
                  same ? "" : " (OUTPUT DIFFERS)");
    std::string tgt;
    if (q.target > 0) {
      char t[32];
      std::snprintf(t, sizeof t, ">= %.1f x rg", q.target);
      tgt = t;
    }
    row(q.name, tmp, tgt, same && (q.target == 0 || mr / mo >= q.target));
    std::filesystem::remove(ours_out);
    std::filesystem::remove(rg_out);
    std::filesystem::remove(grep_out);
  }
  store.reset();
  if (!keep) std::filesystem::remove_all(store_dir);
  if (!keep) std::filesystem::remove(raw_path);

  // 4. Compaction write amplification over a long trickle of small segments.
  if (trickle_bytes > 0) {
    const std::string trickle_dir = dir + "/trickle";
    Registry tm;
    auto ts = StoreLog::Open(trickle_dir, {}, &tm);
    Check(ts.status(), "trickle store");
    CompactorOptions co;
    co.target_bytes = target;
    co.retention.retain = std::chrono::milliseconds(0);
    auto comp = Compactor::Create(ts->get(), co, &tm);
    Check(comp.status(), "compactor");
    Corpus c2;
    uint64_t ingested_raw = 0, ingested_file = 0, segments = 0, max_segments = 0;
    auto t0 = Clock::now();
    double compact_s = 0;
    while (ingested_raw < trickle_bytes) {
      seg.clear();
      while (seg.size() < trickle_segment) c2.Next(&seg);
      ingested_file += WriteSegments(ts->get(), seg, target);
      ingested_raw += seg.size();
      ++segments;
      auto c0 = Clock::now();
      for (;;) {
        auto r = (*comp)->RunOnce();
        Check(r.status(), "compaction");
        if (!r.value()) break;
      }
      compact_s += Secs(Clock::now() - c0);
      max_segments = std::max<uint64_t>(max_segments, (*ts)->segment_count());
    }
    const uint64_t written = tm.NewCounter("oklog_store_compaction_bytes_written_total", "")->Value();
    const uint64_t read = tm.NewCounter("oklog_store_compaction_bytes_read_total", "")->Value();
    const double wa = double(written) / double(ingested_file);
    std::printf(
        "\ntrickle: %llu segments of %llu KiB of records (%.0f MiB), target %llu MiB: ingested %llu file bytes, "
        "compaction wrote %llu and read %llu; %zu segments at the end (at most %llu); %.1f s total, %.1f s compacting\n",
        static_cast<unsigned long long>(segments), static_cast<unsigned long long>(trickle_segment >> 10),
        ingested_raw / 1048576.0, static_cast<unsigned long long>(target >> 20),
        static_cast<unsigned long long>(ingested_file), static_cast<unsigned long long>(written),
        static_cast<unsigned long long>(read), (*ts)->segment_count(), static_cast<unsigned long long>(max_segments),
        Secs(Clock::now() - t0), compact_s);
    std::snprintf(tmp, sizeof tmp, "%.2f bytes written per byte ingested (OK Log #132: ~160)", wa);
    row("compaction write amp.", tmp, "<= 3", wa <= 3.0);
    comp->reset();
    ts->reset();
    if (!keep) std::filesystem::remove_all(trickle_dir);
  }
  if (!keep) std::filesystem::remove_all(dir);

  std::printf("\n%-26s %-70s %-14s %s\n", "measure", "result", "target", "");
  for (const auto& r : rows)
    std::printf("%-26s %-70s %-14s %s\n", r.name.c_str(), r.value.c_str(), r.has_target ? r.target.c_str() : "-",
                r.has_target ? (r.pass ? "PASS" : "MISS") : (r.pass ? "" : "OUTPUT DIFFERS"));
  return 0;
}

}  // namespace
}  // namespace oklog

int main(int argc, char** argv) { return oklog::Main(argc, argv); }
