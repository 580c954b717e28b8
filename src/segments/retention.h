// Retention of the store directory: by age (-store.segment-retain) and by total size
// (-store.max-bytes), then a trash that is purged after a delay (-store.segment-purge), as OK
// Log did it, with its trash and purge metrics actually updated.
//
// Age: a block whose newest record is older than now - retain has expired; a record exactly at
// the cutoff millisecond has not. A segment whose every block has expired is trashed; one that
// only starts with expired blocks is rewritten without them (by the Compactor, which owns the
// merge machinery) when they are at least `min_rewrite_fraction` of its bytes, otherwise it
// waits, so a straddling segment costs at most a bounded rewrite.
// Size: while the queryable segments exceed max_bytes, the oldest blocks (by their newest
// record, across segments) expire as blocks past the age cutoff do: segments left with no block
// are trashed, the others rewritten without their leading expired blocks (at once, whatever
// min_rewrite_fraction says). The newest block is always kept, so a limit smaller than one block
// keeps the newest block rather than nothing.
//
// Trash: a segment is first removed from the StoreLog (no query started later sees it; one
// already running keeps its open file), then renamed to trash/NAME.seg with its mtime set to
// the (injectable) clock; trash/ is ignored by StoreLog::Open. Purge deletes trash/ files whose
// mtime is at least `purge` old. A crash between the two steps leaves the segment in place; it
// is trashed again at the next round.
//
// Thread: not thread-safe; the Compactor's thread calls it between compactions, which keeps
// retention and compaction from ever working on the same segment at once.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "common/ulid.h"
#include "segments/store_log.h"

namespace oklog {

struct RetentionOptions {
  std::chrono::milliseconds retain = std::chrono::hours(168);  // 0: keep forever
  std::chrono::milliseconds purge = std::chrono::hours(24);
  uint64_t max_bytes = 0;                                      // 0: no size limit
  double min_rewrite_fraction = 0.5;  // of a segment's file bytes, to rewrite it shorter
  std::function<std::chrono::system_clock::time_point()> clock;  // default: system_clock::now
};

struct RetentionPlan {
  std::vector<std::shared_ptr<const SegmentReader>> trash;    // whole segments to trash
  std::vector<std::shared_ptr<const SegmentReader>> rewrite;  // drop leading expired blocks
  uint64_t cutoff_ms = 0;  // blocks whose last record is older expire (by age or by size)
};

class Retention {
 public:
  Retention(StoreLog* store, RetentionOptions options, Registry* metrics);

  // What the current segments need, at the clock's now. Pure: changes nothing.
  RetentionPlan Decide() const;
  // The index of the first block of `seg` that has not expired at cutoff_ms (blocks().size()
  // when all have).
  static size_t FirstLiveBlock(const SegmentReader& seg, uint64_t cutoff_ms);
  // Detaches each segment from the store and moves its file into trash/. Returns how many were
  // trashed; failures are logged and counted (success="false").
  size_t Trash(const std::vector<std::shared_ptr<const SegmentReader>>& segments);
  // Deletes trashed files at least `purge` old. Returns how many were deleted.
  size_t Purge();

  std::chrono::system_clock::time_point Now() const;
  const RetentionOptions& options() const { return options_; }

 private:
  StoreLog* store_;
  RetentionOptions options_;
  std::string trash_dir_;
  Counter* trashed_ok_;
  Counter* trashed_failed_;
  Counter* purged_ok_;
  Counter* purged_failed_;
};

}  // namespace oklog
