// The store/ingest data plane served on the cluster port (methods of rpc::RpcServer); the
// bodies are in segment_messages.h:
//
//   segment.next      claims flushed segments (oldest first, at least one if any, up to the max
//                     bytes asked for; none when none wait)
//   segment.read      the pending segment's bytes
//   segment.commit    deletes them (NotFound: not pending, e.g. the claim timed out meanwhile)
//   segment.failed    back to flushed
//   segment.replicate_file  a whole store segment file (segment_format.h), encoded once by the
//                     consuming store; Corruption when the bytes fail CheckSegmentImage (counted,
//                     nothing installed)
//   segment.replicate sorted, distinct records (the receiver encodes them itself; kept for older
//                     consumers)
//
// A body that does not decode is InvalidArgument, counted in
// oklog_segment_rpc_bad_requests_total{method}. This is OK Log's
// three-stage transaction (claim+read, replicate, commit or fail) over RPC; claims that are neither
// committed nor failed go back to flushed after -ingest.segment-pending-timeout.
//
// Thread: loop thread; file work (claim, read, commit, expiry, replica installs) runs on the
// caller's disk WorkPool and answers from its after-callbacks on the loop. Close() stops the
// expiry timer; jobs in flight finish when the pool closes, their answers going nowhere if the
// connection is gone.
#pragma once

#include <uv.h>

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/fs/disk_guard.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/uv/work_pool.h"
#include "rpc/rpc_server.h"
#include "segments/ingest_log.h"
#include "segments/store_log.h"

namespace oklog {

inline constexpr const char* kSegmentNext = "segment.next";
inline constexpr const char* kSegmentRead = "segment.read";
inline constexpr const char* kSegmentCommit = "segment.commit";
inline constexpr const char* kSegmentFailed = "segment.failed";
inline constexpr const char* kSegmentReplicate = "segment.replicate";
inline constexpr const char* kSegmentReplicateFile = "segment.replicate_file";

// Registers segment.next/read/commit/failed for `ingest` on `server` and expires stale claims.
class IngestRpc {
 public:
  // Claims, reads, commits and the claim expiry run on `disk` (the caller's pool, closed after
  // `server` and after Close(); a request that finds it closed is Unavailable).
  static std::unique_ptr<IngestRpc> Create(uv_loop_t* loop, IngestLog* ingest, rpc::RpcServer* server,
                                           WorkPool* disk, std::chrono::milliseconds pending_timeout,
                                           Registry* metrics);
  ~IngestRpc();
  void Close();

 private:
  IngestRpc() = default;
  static void OnTimer(uv_timer_t* t) noexcept;
  WorkPool* disk_ = nullptr;
  IngestLog* ingest_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  std::shared_ptr<bool> expiring_ = std::make_shared<bool>(false);  // an expiry job is in flight
};

// Registers segment.replicate_file and segment.replicate on `server`; the install itself is
// StoreLog::InstallReplicaFile / WriteReplica. It runs on `disk` (a pool of the caller's,
// closed after `server`; a request that finds it closed is Unavailable, nothing stored).
// While `guard` (the store disk's, may be null) says the disk is full, a replica is refused
// with ResourceExhausted naming the reason (the sender copies to another store) and counted in
// oklog_store_replicas_refused_total; an install that fails for lack of space tells the guard.
void ServeReplicas(StoreLog* store, rpc::RpcServer* server, WorkPool* disk, Registry* metrics,
                   DiskGuard* guard = nullptr);

}  // namespace oklog
