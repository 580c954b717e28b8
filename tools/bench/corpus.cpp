#include "tools/bench/corpus.h"

#include <cstdio>
#include <cstring>
#include <vector>

namespace oklog::bench {
namespace {

// xorshift128+ (as reference/performance.md Appendix A), seeded from spec.seed.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s0_(seed), s1_(seed ^ 0xD1B54A32D192ED03ULL) {}
  uint64_t Next() {
    uint64_t s1 = s0_;
    const uint64_t s0 = s1_;
    s0_ = s0;
    s1 ^= s1 << 23;
    s1_ = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return s1_ + s0;
  }
  uint32_t Below(uint32_t n) { return static_cast<uint32_t>(Next() % n); }

 private:
  uint64_t s0_, s1_;
};

constexpr const char* kLevels[] = {"INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG", "INFO"};
constexpr const char* kServices[] = {"api", "auth", "billing", "catalog", "checkout", "search", "cart", "notify"};
constexpr const char* kMethods[] = {"GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"};
constexpr const char* kPaths[] = {"/v1/users/%u", "/v1/orders/%u", "/v1/items/%u", "/v2/search?q=%u",
                                  "/static/app.%u.js", "/v1/cart/%u", "/healthz", "/v1/login"};
// Nine ordinary messages; kCommon is chosen separately for one line in ten.
constexpr const char* kMessages[] = {"ok", "ok", "ok", "cache miss", "token refreshed", "rate limited",
                                     "db slow", "retrying", "ok"};

}  // namespace

bool WriteCorpus(const CorpusSpec& spec, const std::string& path, CorpusStats* stats) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    return false;
  }
  Rng rng(spec.seed);
  std::vector<char> buf;
  buf.reserve(1 << 20);
  char line[512];
  char req_path[64];
  uint64_t ms = 1'700'000'000'000ULL;
  const uint64_t needle_at = spec.records / 2;
  *stats = CorpusStats{};
  for (uint64_t i = 0; i < spec.records; ++i) {
    ms += rng.Below(3) == 0;
    uint64_t t = ms / 1000;
    uint64_t r = rng.Next();
    std::snprintf(req_path, sizeof req_path, kPaths[r % 8], static_cast<unsigned>(rng.Below(100000)));
    unsigned status = (r >> 8) % 100 < 90 ? 200 : ((r >> 8) % 100 < 95 ? 404 : 500 + (r >> 16) % 4);
    const char* msg = (r >> 24) % 10 == 0 ? kCommon : kMessages[(r >> 28) % 9];
    int len = std::snprintf(line, sizeof line,
                            "%02u:%02u:%02u.%03u %s %s req=%016llx method=%s %s status=%u ms=%u msg=\"%s\"%s%s\n",
                            static_cast<unsigned>(t / 3600 % 24), static_cast<unsigned>(t / 60 % 60),
                            static_cast<unsigned>(t % 60), static_cast<unsigned>(ms % 1000), kLevels[(r >> 32) % 10],
                            kServices[(r >> 36) % 8], static_cast<unsigned long long>(rng.Next()),
                            kMethods[(r >> 40) % 8], req_path, status, static_cast<unsigned>(rng.Below(5000)), msg,
                            i == needle_at ? " " : "", i == needle_at ? kNeedle : "");
    if (len <= 0 || len >= static_cast<int>(sizeof line)) {
      std::fclose(f);
      return false;
    }
    if (buf.size() + len > (1 << 20)) {
      if (std::fwrite(buf.data(), 1, buf.size(), f) != buf.size()) break;
      buf.clear();
    }
    buf.insert(buf.end(), line, line + len);
    stats->records++;
    stats->bytes += len;
  }
  bool ok = std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
  ok = (std::fclose(f) == 0) && ok && stats->records == spec.records;
  if (!ok) std::fprintf(stderr, "writing %s failed\n", path.c_str());
  return ok;
}

}  // namespace oklog::bench
