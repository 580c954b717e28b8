// Runs one node-local query over a set of store segments and delivers the matching records, in
// ULID order (or newest first), duplicates removed, to a RecordSink.
//
// Plan: segments are grouped into runs of mutually overlapping ULID ranges; within a segment,
// blocks outside [from, to] or rejected by the block filter are skipped. Every remaining block
// is a task. Tasks are ordered so that a k-way merge over a group only ever waits for the next
// task in that order (a block's first ULID is a lower bound of its records), and are scanned
// ahead on the ScanPool within a window of in-flight tasks; the calling thread (the query's
// driver) scans too when the task it needs has not started. Groups of one segment are emitted
// straight; larger groups are merged by ULID with identical ULIDs kept once.
//
// Thread: Run blocks and must not be called on the loop thread. The executor itself is
// thread-safe: many queries may Run at once and share the pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "query/matcher.h"
#include "query/query_params.h"
#include "query/record_sink.h"
#include "query/scan_pool.h"
#include "segments/segment_file.h"

namespace oklog {

struct ScanRequest {
  std::vector<std::shared_ptr<const SegmentReader>> segments;  // any order; sorted by low inside
  Ulid from;                                                    // inclusive
  Ulid to;                                                      // inclusive
  ScanOrder order = ScanOrder::kAscending;
  std::optional<uint64_t> limit;  // stop after this many records
};

struct ScanStats {
  uint64_t segments = 0;
  uint64_t groups = 0;            // runs of overlapping segments
  uint64_t blocks_selected = 0;   // blocks in range that the filter could not exclude
  uint64_t blocks_skipped = 0;    // blocks in range excluded by the block filter
  uint64_t blocks_read = 0;
  uint64_t bytes_scanned = 0;     // uncompressed bytes of the blocks read
  uint64_t records = 0;           // delivered to the sink
  uint64_t duplicates = 0;        // dropped by the merge
  uint64_t corrupt_blocks = 0;    // found bad while reading (not known when the plan was made)
  uint64_t bad_blocks = 0;        // in range, known bad when the plan was made: not read
};

class QueryExecutor {
 public:
  struct Options {
    size_t scan_threads = 0;  // 0: one per core
    // Tasks scanned ahead of the merge, at least; raised to the largest overlap group + 1.
    size_t min_window_tasks = 0;  // 0: 2 * scan_threads + 2
  };
  // Called on the driver thread for a block that fails to read (checksum, LZ4): the block is
  // skipped and counted; the owner marks it bad (StoreLog::MarkBlockBad). Blocks already marked
  // bad are never read (ScanStats::bad_blocks).
  using CorruptionHandler = std::function<void(const SegmentReader& segment, size_t block, const Status& why)>;

  QueryExecutor(Options options, Registry* metrics);
  ~QueryExecutor();
  QueryExecutor(const QueryExecutor&) = delete;
  QueryExecutor& operator=(const QueryExecutor&) = delete;

  void SetCorruptionHandler(CorruptionHandler handler) { on_corrupt_ = std::move(handler); }

  // Blocking. Returns OK when every record (or `limit` records) was delivered, Cancelled when
  // *cancel became true or the sink refused a record. stats may be null.
  Status Run(const ScanRequest& request, const Matcher& matcher, RecordSink* sink, const std::atomic<bool>& cancel,
             ScanStats* stats);

  size_t scan_threads() const { return pool_.threads(); }

 private:
  Options options_;
  ScanPool pool_;
  CorruptionHandler on_corrupt_;
  Counter* blocks_read_;
  Counter* blocks_skipped_;
  Counter* bytes_scanned_;
  Counter* records_matched_;
  Counter* duplicates_;
  Counter* corrupt_blocks_;
};

}  // namespace oklog
