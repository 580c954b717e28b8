// oklog testsvc: emits synthetic log lines at a fixed rate, as OK Log's did:
// "<RFC3339 local time> <id> <9-digit counter> <filler>" of -size bytes (newline included),
// with filler words from the Crockford alphabet, and bytes/s and records/s on stderr every 10 s.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <random>
#include <thread>

#include "common/flags.h"
#include "tools/cli/tools.h"

namespace oklog {

int RunTestsvc(const std::vector<std::string>& args) {
  std::string id = "foo";
  int64_t size = 512, rate = 5;
  FlagSet fs("testsvc");
  fs.String("id", &id, "ID for this instance");
  fs.Int("size", &size, "bytes per record");
  fs.Int("rate", &rate, "records per second");
  auto rest = fs.Parse(args);
  if (!rest.ok()) {
    if (rest.status().code() == Code::kNotFound) {
      std::cout << fs.Usage();
      return 0;
    }
    std::cerr << rest.status().message() << "\n";
    return 1;
  }
  if (rate <= 0) {
    std::cerr << "testsvc: -rate must be positive\n";
    return 1;
  }
  const char* alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  std::mt19937_64 rng(std::random_device{}());
  // Pre-generate filler of random words, as OK Log did.
  std::string words;
  while (words.size() < 1 << 20) {
    int len = 5 + static_cast<int>(rng() % 16);
    for (int i = 0; i < len; ++i) words += alphabet[rng() % 32];
    words += ' ';
  }
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  auto report = start;
  uint64_t count = 0, bytes = 0, since_records = 0, since_bytes = 0;
  auto interval = std::chrono::nanoseconds(1000000000 / rate);
  auto next = start;
  std::string line;
  while (true) {
    char ts[64];
    std::time_t now = std::time(nullptr);
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S%z", std::localtime(&now));
    char head[160];
    std::snprintf(head, sizeof head, "%s %s %09llu ", ts, id.c_str(), static_cast<unsigned long long>(++count));
    line = head;
    int64_t want = size - 1;
    if (want < static_cast<int64_t>(line.size()) + 1) want = static_cast<int64_t>(line.size()) + 1;
    size_t off = static_cast<size_t>(rng() % (words.size() / 2));
    line.append(words, off, static_cast<size_t>(want) - line.size());
    line += '\n';
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size()) return 0;  // reader went away
    std::fflush(stdout);
    bytes += line.size();
    since_bytes += line.size();
    ++since_records;
    next += interval;
    auto t = clock::now();
    if (t - report >= std::chrono::seconds(10)) {
      double secs = std::chrono::duration<double>(t - report).count();
      std::fprintf(stderr, "%.0f bytes/s, %.0f records/s\n", since_bytes / secs, since_records / secs);
      report = t;
      since_bytes = since_records = 0;
    }
    if (next > t) std::this_thread::sleep_until(next);
  }
}

}  // namespace oklog
