// The store consumer of one node: claims flushed ingest segments, checks and orders their
// records, merges them by ULID with duplicates dropped, writes one store segment, and only
// after the segment is durable (fsynced and renamed) commits the ingest segments. A failure
// anywhere fails the claimed segments back to flushed, so nothing is lost and at worst a record
// is stored twice (removed at query time and by compaction).
//
// Pulls continuously while data is waiting (OK Log's fixed 100 ms tick fell behind under load).
// Runs on its own thread; Stop() finishes the batch in hand and joins.
//
// This is the in-process path of a single node; the cluster issue adds the same pipeline over
// msgpack RPC between ingest and store peers.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <string_view>
#include <thread>

#include "common/fs/disk_guard.h"
#include "common/metrics.h"
#include "segments/ingest_log.h"
#include "segments/store_log.h"

namespace oklog {

struct ConsumerOptions {
  uint64_t target_bytes = 128ull << 20;  // -store.segment-target-size: most bytes per segment
  // Most bytes of ingest segments claimed at once: small enough that the store works right
  // behind ingest instead of in large steps (compaction joins the resulting segments).
  uint64_t max_batch_bytes = 32ull << 20;
  std::chrono::milliseconds retry_backoff{1000};
  // Batches of at least this many bytes are written as consecutive, non-overlapping segments
  // on up to max_parallel_writers threads (one per core).
  uint64_t parallel_min_bytes = 16ull << 20;
  size_t max_parallel_writers = 4;
  // The store disk's guard (may be null): while it says full, nothing is claimed; the data
  // waits in the ingest log. A write that fails for lack of space tells it.
  DiskGuard* store_guard = nullptr;
};

class LocalConsumer {
 public:
  static std::unique_ptr<LocalConsumer> Start(IngestLog* ingest, StoreLog* store, ConsumerOptions options,
                                              Registry* metrics);
  ~LocalConsumer();
  // Finishes the batch in hand and joins. Idempotent; after it the consumer never touches the
  // ingest log or the store again.
  void Stop();
  // Runs one batch on the calling thread (tests). Returns the records written.
  Result<uint64_t> ConsumeOnce();

 private:
  LocalConsumer(IngestLog* ingest, StoreLog* store, ConsumerOptions options, Registry* metrics);
  void Run();
  Result<uint64_t> ConsumeBatch(const std::vector<PendingSegment>& batch);
  // Writes sorted, distinct records as one store segment. Returns its path, or "" when a
  // segment of the same name already holds every one of them (a batch consumed twice).
  Result<std::string> WriteSegment(std::span<const std::string_view> records);

  IngestLog* ingest_;
  StoreLog* store_;
  ConsumerOptions options_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string read_buf_;
  Counter* consumed_segments_;
  Counter* consumed_bytes_;
  Counter* invalid_records_;
  Counter* duplicates_;
  Counter* failures_;
  Counter* store_records_;
};

}  // namespace oklog
