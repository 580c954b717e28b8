#include "segments/ingest/shedding.h"

#include <algorithm>
#include <set>

namespace oklog {

std::string ShedReason(const IngestLog::Backlog& b, uint64_t now_unix_ms, std::chrono::steady_clock::time_point now,
                       std::chrono::milliseconds after, uint64_t free_bytes, uint64_t min_free_bytes,
                       bool shedding_now) {
  const uint64_t margin = shedding_now ? std::max<uint64_t>(1 << 20, min_free_bytes / 10) : 0;
  if (min_free_bytes > 0 && free_bytes < 2 * min_free_bytes + margin)
    return "ingest disk nearly full: " + std::to_string(free_bytes) + " bytes free, below twice -ingest.min-free-bytes " +
           std::to_string(min_free_bytes);
  if (after.count() <= 0 || b.segments == 0 || b.oldest_unix_ms == 0) return "";
  const auto after_ms = static_cast<uint64_t>(after.count());
  const uint64_t waited_ms = now_unix_ms > b.oldest_unix_ms ? now_unix_ms - b.oldest_unix_ms : 0;
  if (waited_ms < after_ms || now - b.last_commit < after) return "";
  const auto idle_s = std::chrono::duration_cast<std::chrono::seconds>(now - b.last_commit).count();
  return "the stores consumed nothing for " + std::to_string(idle_s) + "s while " + std::to_string(b.bytes) +
         " bytes in " + std::to_string(b.segments) + " segment(s) wait";
}

bool DecideShedding(const std::string& self, bool has_reason, bool shedding_now,
                    const std::vector<ShedPeer>& live_ingesters) {
  if (!has_reason) return false;
  std::set<std::string> names = {self};
  size_t others = 0, ranked_before = 0;  // other shedding ingesters; those whose name sorts first
  for (const ShedPeer& p : live_ingesters) {
    if (p.name == self || !names.insert(p.name).second || !p.shedding) continue;
    ++others;
    if (p.name < self) ++ranked_before;
  }
  const size_t allowed = (names.size() - 1) / 2;
  return shedding_now ? ranked_before < allowed : others < allowed;
}

}  // namespace oklog
