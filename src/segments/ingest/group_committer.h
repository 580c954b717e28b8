// GroupCommitter: the durable port's group commit. Every durable connection's records go into
// one batch; the connection stops reading until the batch is on disk. One job on the disk
// WorkPool appends the batch to the shared durable segment and fdatasyncs it; meanwhile the next
// batch collects. One fsync per batch, however many connections.
//
// Outcome of a batch, told through Callbacks on the loop thread: every connection of a synced
// batch is resumed; when the segment cannot be created, written or synced, the error is logged
// and counted (oklog_ingest_write_errors_total), every connection of that batch is failed (the
// server closes it: durable producers get no acknowledgement but the open connection, so the
// close is how they learn), and the segment is retired to flushed with only the whole records
// written before the failure. The next batch starts a new segment.
// A write that fails for lack of space is told to the disk guard (if any), which makes the server
// refuse producers (ingest_server.h); batches of connections being handed over still go into
// the headroom the guard's floor keeps.
//
// Thread: loop thread only; the file work runs on the pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/fs/disk_guard.h"
#include "common/log.h"
#include "common/uv/work_pool.h"
#include "segments/ingest/ingest_metrics.h"
#include "segments/ingest_log.h"

namespace oklog {

class GroupCommitter {
 public:
  using ConnIds = std::vector<uint64_t>;
  struct Callbacks {
    std::function<void(const ConnIds&)> resume;  // the batch is durable
    std::function<void(const ConnIds&)> fail;    // it is not: close these connections
  };
  GroupCommitter(IngestLog* log, WorkPool* disk, IngestMetrics* metrics, uint64_t flush_size_bytes,
                 std::chrono::milliseconds flush_age, Callbacks callbacks, DiskGuard* guard = nullptr);
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Where a durable connection appends its encoded records for the next batch.
  std::string* next() { return &next_; }
  // conn waits for the next batch (has stopped reading); starts a commit if none is running.
  void Join(uint64_t conn);
  // Starts a commit of the collected batch unless one is running or there is nothing.
  void MaybeStart();
  // The flush timer: retires the durable segment once it is flush_age old (not mid-commit).
  void OnTimer(std::chrono::steady_clock::time_point now);
  // Nothing running and nothing collected.
  bool idle() const { return !in_flight_ && next_.empty(); }
  // At shutdown, when idle: flushes the durable segment.
  void Finish();

 private:
  struct Batch;
  void Done(Batch* batch);
  void Retire(const char* reason);

  IngestLog* const log_;
  WorkPool* const disk_;
  IngestMetrics* const metrics_;
  const uint64_t flush_size_bytes_;
  const std::chrono::milliseconds flush_age_;
  Callbacks callbacks_;
  DiskGuard* const guard_;  // may be null
  std::shared_ptr<spdlog::logger> logger_ = Logger("ingest");
  std::unique_ptr<ActiveSegment> seg_;  // the pool's while in_flight_
  std::string next_;
  ConnIds waiting_;
  bool in_flight_ = false;
};

}  // namespace oklog
