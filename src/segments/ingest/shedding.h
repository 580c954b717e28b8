// Shedding: an ingester that cannot pass its data on refuses new connections and tells its bulk
// forwarders to move (OK Log designed this and never built it), so producers that list several
// ingesters send to the ones whose data flows.
//
// Why an ingester would shed (ShedReason):
//   - its stores consumed nothing for `after` (-ingest.shed-after, 30s) while its oldest
//     unconsumed segment is at least that old (the stores are unreachable, or all stuck);
//   - its ingest disk is nearly full: fewer than twice -ingest.min-free-bytes free (below the
//     floor itself the disk guard refuses everything, minority or not: nothing can be written);
//     once shedding for it, until twice the floor plus a tenth of it (at least 1 MiB) is free,
//     so free space hovering at the line does not start and stop shedding every second.
// Whether it does (DecideShedding): never more than a minority of the live ingesters at once.
// With n live ingesters (itself included) at most (n - 1) / 2 shed, so a lone ingester never
// does. An ingester with a reason starts shedding only while fewer than (n - 1) / 2 others
// gossip `shedding`; one that sheds goes on while fewer than (n - 1) / 2 of those rank before it
// by name. So when two start in the same second (neither saw the other yet), the one ranked
// later stops at its next decision, one gossip round later; that round is the only time more
// than a minority may shed.
//
// Pure functions, no clock of their own: the node's health timer calls them each second.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "segments/ingest_log.h"

namespace oklog {

struct ShedPeer {
  std::string name;
  bool shedding = false;  // as gossiped (NodeMeta::shedding non-empty)
};

// The reason to shed, or "" for none. after 0: the backlog rule is off; min_free 0: the disk
// rule is off.
// shedding_now: what was decided last (the disk rule's margin).
std::string ShedReason(const IngestLog::Backlog& backlog, uint64_t now_unix_ms, std::chrono::steady_clock::time_point now,
                       std::chrono::milliseconds after, uint64_t free_bytes, uint64_t min_free_bytes,
                       bool shedding_now = false);

// Whether `self` sheds now: has_reason (ShedReason non-empty), shedding_now (what it decided
// last), and the live ingesters of the gossip view (self among them or not: counted once).
bool DecideShedding(const std::string& self, bool has_reason, bool shedding_now,
                    const std::vector<ShedPeer>& live_ingesters);

}  // namespace oklog
