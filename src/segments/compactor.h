// Compaction and retention of the store directory, on one thread of its own (never the loop
// thread), one operation at a time.
//
// Policy (PickCompaction), bounded write amplification instead of OK Log's re-merging of
// ever-growing segments (its issue #132):
//   0. Contained duplicates: a segment every record of which is also in overlapping segments
//      (a crash between a compaction's outputs and the removal of its inputs, a replica that
//      arrived twice) is removed without writing anything.
//   1. Overlap: a run of segments whose ULID ranges overlap is merged unless the others together
//      are less than 1/fanout of the largest: a tiny late segment waits (the query merge
//      handles the overlap) rather than make the compactor rewrite a big segment for it.
//   2. Size tiers: a segment's level is how many factors of `fanout` its raw size is below the
//      target size. The first run of consecutive segments (by ULID) all at level >= k, whose
//      bytes reach the next level's size, is merged, deepest level first. The output is at a
//      strictly lower level than each input and never above the target, so a byte is rewritten
//      at most log_fanout(target / first size) times; levels 0 and 1 are never tiered.
//
// Compact(inputs): a streaming k-way merge by ULID (one block per input in memory), identical
// ULIDs kept once; outputs are split at the target size. Steps, each survivable by a crash:
//   write each output: SegmentWriter .tmp, fsync, rename LOW-HIGH.seg, fsync dir
//     (when an output's name is an input's, that input is renamed NAME.seg.replaced first;
//      StoreLog::Open deletes it if NAME.seg exists, else renames it back)
//   StoreLog::Swap: queries now see the outputs instead of the inputs, atomically
//   unlink the inputs' files
// A crash before the swap leaves inputs and outputs both on disk: duplicates, which the query
// merge drops and the next compaction (the overlap rule) removes. Nothing is lost at any step.
// A failure (I/O) removes the finished outputs and keeps the inputs. A bad input block (marked,
// or failing its checksum, LZ4 frame or records now: StoreLog::MarkBlockBad) is stepped over:
// the outputs hold every good record, and the block's range stays a gap (gaps.h), so no answer
// and no holdings claim its records after the inputs are gone.
//
// Range drops (RequestDrop, from the holdings exchange: copies beyond N): every record in a
// range goes. A drop waits for its not_before, then gathers with the others due for
// drop_gather, so that one rewrite of a segment serves every drop in it; the segments
// overlapping the ranges are then compacted as above with the ranges' records left out, after
// each drop's still_wanted() agreed. A range that turns out to hold more distinct records than
// its max_records fails the rewrite (InvalidArgument to its done(); nothing is removed) and the
// others go again at the next round.
//
// Thread: Start/Stop from the owner; RunOnce/Compact are for tests and tools and must not run
// while the thread is started.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "segments/retention.h"
#include "segments/store_log.h"

namespace oklog {

struct CompactorOptions {
  uint64_t target_bytes = 128ull << 20;  // -store.segment-target-size: raw record bytes per output
  uint32_t fanout = 8;                   // size tiers are this factor apart (>= 2)
  std::chrono::milliseconds idle_interval{1000};  // between rounds that found nothing to do
  RetentionOptions retention;
  std::chrono::milliseconds drop_gather{10000};  // range drops due are gathered this long
};

struct CompactionResult {
  size_t inputs = 0;
  size_t outputs = 0;
  uint64_t bytes_read = 0;     // compressed bytes of the input blocks read
  uint64_t bytes_written = 0;  // file bytes of the outputs
  uint64_t records = 0;        // written
  uint64_t duplicates = 0;     // dropped
  uint64_t range_dropped = 0;  // records left out because they lie in a drop range
  uint64_t bad_blocks = 0;     // input blocks stepped over as bad (their gaps stay in gaps.log)
};

class Compactor {
 public:
  // InvalidArgument for fanout < 2 or a target size below 4 KiB.
  static Result<std::unique_ptr<Compactor>> Create(StoreLog* store, CompactorOptions options, Registry* metrics);
  ~Compactor();  // Stop()

  // Runs rounds on a thread of its own until Stop: retention, then one compaction; waits
  // idle_interval when there was nothing to do.
  void Start();
  // Interrupts a compaction in progress (its outputs are removed, its inputs kept) and joins.
  void Stop();

  // One round on the calling thread. Returns whether it changed anything (so another round
  // may find more to do).
  Result<bool> RunOnce();
  // The next compaction the policy wants (empty: none), from the store's current segments.
  std::vector<std::shared_ptr<const SegmentReader>> PickCompaction() const;
  // Removes one segment whose records are all in other segments (policy rule 0). Returns how
  // many were removed (0 or 1).
  Result<size_t> DropContainedSegments();
  // Merges exactly `inputs` into new segments and swaps them in. Blocks of an input whose last
  // record is older than `expire_before_ms` are skipped (retention). NotFound when the inputs
  // hold no record to keep (they are then removed).
  Result<CompactionResult> Compact(const std::vector<std::shared_ptr<const SegmentReader>>& inputs,
                                   uint64_t expire_before_ms = 0);
  // Queues a range drop (thread-safe); it is made by a later round.
  void RequestDrop(RangeDrop d);
  // Makes the drops that are due (every one, now, when `force`). Returns how many ranges were
  // dropped. Part of RunOnce; for tests.
  Result<size_t> RunDrops(bool force = false);

  Retention* retention() { return &retention_; }

 private:
  Compactor(StoreLog* store, CompactorOptions options, Registry* metrics);
  void Run();
  // Records in `drop` (sorted, disjoint) are left out and counted in *dropped (one per range).
  struct Drops {
    std::vector<std::pair<std::string, std::string>> ranges;  // canonical ULID text, inclusive
    std::vector<uint64_t> max;      // more dropped in a range fail the compaction, setting over
    std::vector<uint64_t> dropped;
    std::vector<bool> over;
  };
  Result<CompactionResult> DoCompact(const std::vector<std::shared_ptr<const SegmentReader>>& inputs,
                                     uint64_t expire_before_ms, Drops* drops = nullptr);

  StoreLog* store_;
  CompactorOptions options_;
  Retention retention_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  // Segments found not to be contained in others, with the number of overlapping blocks then.
  std::map<std::shared_ptr<const SegmentReader>, size_t> not_contained_;
  std::mutex drops_mu_;
  std::vector<RangeDrop> drops_;  // requested, not made yet
  Counter* range_drops_;
  Counter* range_dropped_records_;
  Counter* bytes_read_;
  Counter* bytes_written_;
  Counter* duplicates_;
  Family<Counter>* runs_;
  Histogram* duration_;
};

}  // namespace oklog
