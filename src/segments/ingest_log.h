// The ingest directory (-ingest.path): segment files moving through states by atomic rename.
//
//   NAME.active  --flush (size, age, close)-->  NAME.flushed  --Claim-->  NAME.pending
//   NAME.pending --Commit--> deleted            NAME.pending  --Fail or timeout--> NAME.flushed
//
// NAME is a ULID taken when the segment is created, so name order is creation order and
// "oldest flushed" needs no mtime. A LOCK file (flock) keeps a second process off the directory.
// At Open, every .active is cut back to its last complete record and renamed .flushed (an empty
// one is deleted), and every .pending goes back to .flushed: nothing acknowledged is lost.
// Only regular files are opened: an entry under a segment's name that is a FIFO, socket, device
// or directory (or a symlink to one) is left alone, logged and counted
// (oklog_ingest_skipped_files_total); a non-regular LOCK fails Open (InvalidArgument).
//
// Thread-safe: the loop thread creates and flushes active segments while consumers claim,
// commit and fail on their own threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/fs/env.h"
#include "common/metrics.h"
#include "common/status.h"

namespace oklog {

// An open .active file. Appends are buffered; Sync writes the buffer and fdatasyncs.
// Not thread-safe: one owner at a time (a connection, or the durable group committer).
class ActiveSegment {
 public:
  ~ActiveSegment();
  ActiveSegment(const ActiveSegment&) = delete;
  ActiveSegment& operator=(const ActiveSegment&) = delete;

  // Buffers bytes (whole records); writes through when the buffer passes 1 MiB.
  // IOError/ResourceExhausted on a failed write. A failure is sticky: every later Append,
  // WriteOut and Sync returns it, and Flush keeps only the bytes written before it (a torn
  // record is cut off), so readers never see a partial record.
  Status Append(const char* data, size_t n);
  // Writes buffered bytes to the file (no fsync).
  Status WriteOut();
  // WriteOut + fdatasync; the first Sync also fsyncs the directory, so the file's name is as
  // durable as its bytes.
  Status Sync();
  uint64_t bytes() const { return bytes_; }          // appended so far, buffered or not
  uint64_t records() const { return records_; }
  void AddRecords(uint64_t n) { records_ += n; }
  std::chrono::steady_clock::time_point created() const { return created_; }
  const std::string& name() const { return name_; }

 private:
  friend class IngestLog;
  ActiveSegment(Env* env, std::string dir, std::string name, std::unique_ptr<WritableFile> file);
  Env* const env_;
  const std::string dir_;
  std::string name_;
  std::unique_ptr<WritableFile> file_;
  Status error_;                // sticky write/sync failure
  uint64_t written_bytes_ = 0;  // reached the file: whole records
  bool dir_synced_ = false;
  std::string buf_;
  uint64_t bytes_ = 0;
  uint64_t records_ = 0;
  std::chrono::steady_clock::time_point created_;
};

// A segment claimed by a consumer.
struct PendingSegment {
  std::string id;    // NAME
  std::string path;  // dir/NAME.pending
  uint64_t bytes = 0;
};

class IngestLog {
 public:
  struct Options {
    std::chrono::milliseconds pending_timeout{60000};
    Env* env = Env::Default();  // every file operation; must outlive the log
  };
  // Creates the directory if needed, takes the LOCK (Unavailable if another process holds it),
  // and recovers .active and .pending files.
  static Result<std::unique_ptr<IngestLog>> Open(const std::string& dir, Options options, Registry* metrics);
  ~IngestLog();

  const std::string& dir() const { return dir_; }
  // The Env the log's files live in (consumers and the segment RPC read them through it).
  Env* env() const { return options_.env; }

  // A new empty NAME.active.
  Result<std::unique_ptr<ActiveSegment>> NewActive();
  // Writes out and closes the segment; renames it to .flushed, or deletes it when empty.
  // Wakes consumers waiting in WaitForFlushed. reason ("size", "age", "close", ...) labels
  // oklog_ingest_writer_flushes_total.
  Status Flush(std::unique_ptr<ActiveSegment> seg, const char* reason);

  // Claims flushed segments, oldest first, until max_bytes is reached (at least one if any).
  std::vector<PendingSegment> Claim(uint64_t max_bytes);
  // Deletes a claimed segment: its records are safely stored elsewhere. Then calls the commit
  // observer, if any, on the committing thread (outside the log's lock).
  Status Commit(const std::string& id);
  // Bulk ingest acknowledges a segment when it is committed. Set before consumers start.
  void SetCommitObserver(std::function<void(const std::string& id)> cb) { on_commit_ = std::move(cb); }
  // Returns a claimed segment to .flushed, to be claimed again.
  Status Fail(const std::string& id);
  // Fails pending segments claimed longer than the pending timeout ago. Returns how many.
  int ExpirePending(std::chrono::steady_clock::time_point now);

  // Blocks until a flushed segment exists, Shutdown() was called, or the timeout passed.
  // Returns true when flushed segments are waiting.
  bool WaitForFlushed(std::chrono::milliseconds timeout);
  // Wakes every waiter for good.
  void Shutdown();

  size_t flushed_count() const;
  size_t pending_count() const;
  uint64_t flushed_bytes() const;
  // Directory entries Open skipped because they are not regular files.
  uint64_t skipped_files() const { return skipped_files_->Value(); }

  // What the stores have not consumed yet (flushed and claimed segments), for the node's load
  // report and shedding (segments/ingest/shedding.h).
  struct Backlog {
    size_t segments = 0;
    uint64_t bytes = 0;
    uint64_t oldest_unix_ms = 0;  // creation time of the oldest (its ULID name); 0: none
    // The last Commit, or the log's Open when none since.
    std::chrono::steady_clock::time_point last_commit;
  };
  Backlog backlog() const;

 private:
  IngestLog(std::string dir, Options options, Registry* metrics);
  Status Recover();

  std::string dir_;
  Options options_;
  std::unique_ptr<FileLock> lock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_ = false;
  std::map<std::string, uint64_t> flushed_;  // name -> bytes, name order = age order
  struct Claimed {
    uint64_t bytes;
    std::chrono::steady_clock::time_point since;
  };
  std::map<std::string, Claimed> pending_;
  std::chrono::steady_clock::time_point last_commit_ = std::chrono::steady_clock::now();
  std::function<void(const std::string& id)> on_commit_;
  Family<Counter>* flushes_;
  Counter* committed_segments_;
  Counter* committed_bytes_;
  Counter* failed_segments_;
  Counter* skipped_files_;
  Histogram* flush_size_;
  Histogram* flush_age_;
};

}  // namespace oklog
