// Gaps: the ULID ranges whose records this store lost to bad blocks, so that no answer claims
// them and repair can bring them back.
//
// A gap is one bad block's range (its first and last ULID, from the segment's index, which is
// checked apart from the blocks) and its record count. It outlives the block: compaction steps
// over a bad block and writes only the good records, so after that only this log says that the
// range is short. When the block was found, the replicated batches overlapping its range were
// dropped from this store's holdings (holdings.h), so the other stores count one copy fewer and
// repair copies the batches back; the gap keeps their names and is healed once every one of
// them is held here again (a repair copy stored the records). A gap with no batch (a single
// node, whose consumer notes none) is never healed: those records are gone from this node.
//
//   gaps.log := line*
//   line     := "+" SP LOW SP HIGH SP RECORDS (SP BLOW SP BHIGH)* LF   a gap, and its batches
//             | "=" SP LOW SP HIGH LF                                  healed
//             | "-" SP LOW SP HIGH LF                                  forgotten (retention)
//   ULIDs canonical, RECORDS decimal. A torn or unreadable line is skipped (counted in
//   oklog_store_gaps_log_errors_total); Open rewrites the file with the live entries (tmp, rename). No fsync: a lost line is found again
//   when the block is still on disk (start-up verification); one lost after the block was
//   compacted away loses only the 206 for that range.
//
// Thread-safe (one mutex).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/fs/env.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/ulid.h"
#include "segments/holdings.h"
#include "segments/line_log.h"

namespace oklog {

struct Gap {
  Ulid low, high;                // the bad block's first and last record
  uint64_t records = 0;          // records the block held
  std::vector<BatchId> batches;  // replicated batches overlapping it when it was found
  bool healed = false;           // every batch is held here again
};

class Gaps {
 public:
  // Loads dir/gaps.log (absent: no gap) and rewrites it with the live entries.
  static Result<std::unique_ptr<Gaps>> Open(Env* env, const std::string& dir, Registry* metrics);
  ~Gaps();

  // Notes a gap; false, and nothing changes, when a gap of that range is known (healed or not).
  // A log append that fails is logged and counted; the gap is kept in memory all the same.
  bool Add(const Gap& g);
  bool Has(const Ulid& low, const Ulid& high) const;
  // Heals the open gaps whose batches (at least one) `held` all says are held here again.
  // Returns how many were healed.
  size_t Heal(const std::function<bool(const BatchId&)>& held);
  // The gaps not healed that overlap [from, to], by low.
  std::vector<Gap> Unhealed(const Ulid& from, const Ulid& to) const;
  // Forgets every gap wholly older than `floor` (retention removed the range). Returns how many.
  size_t DropBelow(const Ulid& floor);
  size_t unhealed() const;

 private:
  explicit Gaps(Registry* metrics);
  void AppendLine(const std::string& line);  // mu_ held
  void UpdateGauge();                        // mu_ held
  mutable std::mutex mu_;
  std::map<std::pair<Ulid, Ulid>, Gap> gaps_;
  std::unique_ptr<LineLog> log_;
  Gauge* unhealed_gauge_;
  Counter* log_errors_;
};

}  // namespace oklog
