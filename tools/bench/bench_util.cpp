#include "tools/bench/bench_util.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>
#include <thread>

#include "common/http_client.h"

namespace oklog::bench {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint64_t WallMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

Stats Summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  size_t n = v.size();
  s.median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return s;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  // Nearest rank.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

std::string UrlEncode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::optional<double> MetricValue(std::string_view body, std::string_view name) {
  std::optional<double> sum;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find('\n', pos);
    if (eol == std::string_view::npos) eol = body.size();
    std::string_view line = body.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.size() > name.size() && line.substr(0, name.size()) == name &&
        (line[name.size()] == ' ' || line[name.size()] == '{')) {
      size_t sp = line.rfind(' ');
      double v = std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
      sum = sum.value_or(0) + v;
    }
  }
  return sum;
}

DdResult ProbeDisk(const std::string& dir) {
  DdResult r;
  std::string file = dir + "/dd.bin", err = dir + "/dd.err";
  ExitInfo e = RunCommand({"env", "LC_ALL=C", "dd", "if=/dev/zero", "of=" + file, "bs=1M", "count=1024",
                           "conv=fdatasync"},
                          {.stdin_path = "", .stdout_path = "", .stderr_path = err, .cwd = ""}, milliseconds(120000));
  std::string text = ReadFileOrEmpty(err);
  fs::remove(file);
  fs::remove(err);
  // "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 1.23 s, 873 MB/s"
  std::smatch m;
  static const std::regex kRe(R"((\d+) bytes .*copied, ([0-9.]+) s)");
  if (e.Ok() && std::regex_search(text, m, kRe)) {
    double bytes = std::stod(m[1]), secs = std::stod(m[2]);
    if (secs > 0) {
      r.ok = true;
      r.mb_per_s = bytes / secs / 1e6;
    }
  } else {
    std::fprintf(stderr, "dd failed: %s\n", text.c_str());
  }
  return r;
}

std::string LoadAverage() {
  std::string s = ReadFileOrEmpty("/proc/loadavg");
  std::istringstream ss(s);
  std::string a, b, c;
  ss >> a >> b >> c;
  return a + " " + b + " " + c;
}

const char* PassMiss(bool pass) { return pass ? "PASS" : "MISS"; }

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

std::map<int, double> ThreadCpuSeconds(pid_t pid) {
  std::map<int, double> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    int tid = std::atoi(it->path().filename().c_str());
    if (auto cpu = StatCpuSeconds(it->path().string() + "/stat")) out[tid] = *cpu;
  }
  return out;
}

std::string ThreadCpuDelta(pid_t pid, const std::map<int, double>& before, const std::map<int, double>& after) {
  std::vector<std::pair<double, int>> v;
  for (const auto& [tid, cpu] : after) {
    auto b = before.find(tid);
    double d = cpu - (b == before.end() ? 0 : b->second);
    if (d >= 0.01) v.emplace_back(d, tid);
  }
  std::sort(v.rbegin(), v.rend());
  std::string s;
  for (const auto& [d, tid] : v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%s %d: %.2f s", s.empty() ? "" : ", ", tid == pid ? "main" : "tid", tid, d);
    s += buf;
  }
  return s.empty() ? "-" : s;
}

QueryRun RunQuery(const std::string& base, const std::string& path_and_query,
                  const std::function<void(std::string_view)>& on_body, std::chrono::milliseconds timeout) {
  QueryRun q;
  HttpClientOptions o;
  o.timeout = timeout;
  o.body_idle_timeout = timeout;
  auto t0 = Clock::now();
  auto r = HttpFetch("GET", base + path_and_query, o, [&](std::string_view chunk) {
    q.bytes += chunk.size();
    for (const char* p = chunk.data(); (p = static_cast<const char*>(
                                            std::memchr(p, '\n', chunk.data() + chunk.size() - p))) != nullptr;
         ++p) {
      q.lines++;
    }
    if (on_body) on_body(chunk);
    return true;
  });
  q.seconds = Since(t0);
  if (r.ok()) {
    q.status = r->status;
    q.ok = r->status == 200;
  } else {
    std::fprintf(stderr, "query %s: %s\n", path_and_query.c_str(), r.status().ToString().c_str());
  }
  return q;
}

std::optional<NodeProcess> NodeProcess::Start(const std::string& oklog, const std::string& mode,
                                              const std::string& dir, const std::vector<std::string>& extra_args,
                                              std::chrono::milliseconds ready_timeout) {
  std::vector<int> ports = FreeLoopbackPorts(5);
  if (ports.empty()) return std::nullopt;
  auto addr = [&](int i) { return "tcp://127.0.0.1:" + std::to_string(ports[i]); };
  std::vector<std::string> argv = {oklog,       mode,           "-api",   addr(0),         "-ingest.fast",
                                   addr(1),     "-ingest.durable", addr(2), "-ingest.bulk",  addr(3),
                                   "-cluster",  addr(4),        "-ingest.path", dir + "/data/ingest",
                                   "-store.path", dir + "/data/store"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto child = Child::Spawn(argv, {.stdin_path = "", .stdout_path = dir + "/node.log",
                                   .stderr_path = dir + "/node.err", .cwd = dir});
  if (!child) return std::nullopt;
  NodeProcess node(std::move(*child), dir, ports[0], ports[1], ports[4]);
  auto deadline = Clock::now() + ready_timeout;
  while (Clock::now() < deadline) {
    if (node.child_.Poll()) return std::nullopt;  // exited early
    if (node.Metrics()) return node;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return std::nullopt;
}

std::optional<std::string> NodeProcess::Get(const std::string& path, std::chrono::milliseconds timeout) const {
  HttpClientOptions o;
  o.timeout = timeout;
  o.body_idle_timeout = timeout;
  auto r = HttpFetchAll("GET", base() + path, o);
  if (!r.ok() || r->status != 200) return std::nullopt;
  return std::move(r->body);
}

ExitInfo NodeProcess::Stop(std::chrono::milliseconds timeout, std::chrono::milliseconds stacks_after) {
  if (child_.pid() <= 0) return ExitInfo{};  // already reaped
  child_.Signal(SIGTERM);
  auto t0 = Clock::now();
  std::optional<ExitInfo> polled;
  bool stacks_done = false;
  while (!(polled = child_.Poll()) && Clock::now() - t0 < timeout) {
    if (!stacks_done && Clock::now() - t0 >= stacks_after) {
      // Slow shutdown: record where every thread is, for whoever owns the node's shutdown.
      stacks_done = true;
      std::fprintf(stderr, "[bench] %s still running %.1f s after SIGTERM; thread stacks (gdb):\n", dir_.c_str(),
                   Since(t0));
      RunCommand({"gdb", "-batch", "-p", std::to_string(child_.pid()), "-ex", "thread apply all bt 20"},
                 {.stdin_path = "", .stdout_path = dir_ + "/shutdown_stacks.txt", .stderr_path = "", .cwd = ""},
                 milliseconds(30000));
      std::fprintf(stderr, "%s\n", ReadFileOrEmpty(dir_ + "/shutdown_stacks.txt").c_str());
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  ExitInfo info = polled ? *polled : child_.Wait(milliseconds(0));
  info.wall_s = Since(t0);
  return info;
}

ScratchDir::ScratchDir(const std::string& tmp, const std::string& prefix, bool keep) : keep_(keep) {
  std::string tmpl = tmp + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) return;
  dir_ = buf.data();
  static std::string interrupt_message;
  interrupt_message = "[bench] interrupted; children killed; remove " + dir_ + "\n";
  InstallInterruptHandler(interrupt_message.c_str());
}

ScratchDir::~ScratchDir() {
  if (dir_.empty()) return;
  if (keep_) {
    std::fprintf(stderr, "kept %s\n", dir_.c_str());
  } else {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

}  // namespace oklog::bench
