// DiskGuard: is one directory's disk too full to take more data? The ingest log and the store
// each have one (-ingest.min-free-bytes, -store.min-free-bytes). While the ingest disk's says
// full, the ingest listeners refuse producers (what connections being handed over still send
// goes into the headroom the floor keeps); while the store disk's does, the consumers claim
// nothing and replicas are refused. A write that still fails is an error Status like any other
// (whole records only, nothing torn), so a full disk corrupts nothing.
//
// Full when, at the last Poll, the free bytes (Env::FreeBytes: what an unprivileged writer may
// use) were below the floor, or since a write there failed with ResourceExhausted (ENOSPC,
// EDQUOT: NoteWriteError). Not full again until a Poll sees the free bytes at least the margin
// (max(resume_bytes, floor / 10)) above both the floor and what was free when the write failed:
// the disk must have gained room, so a node does not flap on the edge. A failed write whose
// cause free bytes do not show (no inodes left, a quota) would latch for ever: after
// `error_retry` above the floor plus the margin the guard lets writes try again (a failure
// latches it anew). A Poll that cannot read the free space (the directory gone, EIO) keeps the
// last state and is logged.
//
// Poll reads the filesystem each time (the node's health timer calls it each second on the loop
// thread; statvfs does not touch the disk's data). Transitions are logged,
// with the reason; oklog_disk_free_bytes{dir} and oklog_disk_full{dir} are exported.
//
// Thread-safe: full() is one atomic load; Poll, NoteWriteError and reason() take a mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "common/fs/env.h"
#include "common/metrics.h"
#include "common/status.h"

namespace oklog {

class DiskGuard {
 public:
  struct Options {
    std::string dir;    // the directory whose filesystem is watched
    std::string label;  // "ingest" or "store": the metrics' dir label and the log's wording
    std::string flag;   // the floor's flag, named in the reason ("-ingest.min-free-bytes")
    uint64_t min_free_bytes = 0;
    uint64_t resume_bytes = 1 << 20;  // see above; at least this much above the floor
    std::chrono::milliseconds error_retry{30000};
    Env* env = Env::Default();
  };
  DiskGuard(Options options, Registry* metrics);
  DiskGuard(const DiskGuard&) = delete;
  DiskGuard& operator=(const DiskGuard&) = delete;

  bool full() const { return full_.load(std::memory_order_acquire); }
  // Why it is full ("ingest disk: /d has 524288 bytes free, below -ingest.min-free-bytes
  // 1048576"); empty when it is not.
  std::string reason() const;
  // Reads the free space and updates the state. Returns full().
  bool Poll();
  // A write in dir failed: ResourceExhausted makes the guard full at once; other errors are
  // not the guard's business.
  void NoteWriteError(const Status& s);
  uint64_t free_bytes() const;  // at the last successful read
  const Options& options() const { return o_; }

 private:
  void SetFull(bool full, const std::string& why);  // under mu_

  const Options o_;
  std::atomic<bool> full_{false};
  mutable std::mutex mu_;
  std::string reason_;
  uint64_t free_ = 0;
  uint64_t free_at_error_ = 0;  // free bytes when a write failed (0: none pending)
  bool error_pending_ = false;
  std::chrono::steady_clock::time_point error_at_;
  Gauge* free_gauge_;
  Gauge* full_gauge_;
};

}  // namespace oklog
