// The store directory (-store.path): the set of committed store segments `LOW-HIGH.seg`, each
// open as a SegmentReader. Thread-safe: Select may be called from query worker threads while
// the consumer adds segments on another thread.
//
// Lifetime: Select returns shared_ptrs, so a query keeps reading a segment that compaction or
// retention removes meanwhile (the file is unlinked; the open descriptor stays valid).
//
// Start-up: every *.seg is opened and verified. A segment whose footer, index or name fails (or
// whose read fails) is moved whole to `quarantine/` beside the data, logged and counted, never
// deleted. A block that fails alone (checksum, LZ4 frame, records) is marked bad (MarkBlockBad):
// the segment stays, its other blocks queryable; the block's range is a gap (gaps.h). Leftover
// temporary files from a crash are removed (they were never renamed, so never acknowledged).
// Only regular files are opened: anything else under any name (a FIFO, socket, device,
// directory, or a symlink to one) is left alone, logged and counted
// (oklog_store_skipped_files_total); a non-regular holdings.log fails Open (InvalidArgument).
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "segments/gaps.h"
#include "segments/holdings.h"
#include "segments/segment_file.h"

namespace oklog {

struct StoreLogOptions {
  SegmentWriterOptions writer;
  // Verify every block checksum at start (Open); off only for tools that open read-only.
  bool verify_on_open = true;
  uint64_t placement_bucket_ms = kDefaultPlacementBucketMs;  // holdings.h (-store.placement-bucket)
  Env* env = Env::Default();  // every file operation of the store, its writers and readers; outlives the log
};

class StoreLog {
 public:
  static Result<std::unique_ptr<StoreLog>> Open(const std::string& dir, StoreLogOptions options, Registry* metrics);
  ~StoreLog();

  const std::string& dir() const { return dir_; }
  Env* env() const { return options_.env; }
  // Segments whose [low, high] overlaps [from, to], sorted by low (then high).
  std::vector<std::shared_ptr<const SegmentReader>> Select(const Ulid& from, const Ulid& to) const;
  // Every segment, sorted by low.
  std::vector<std::shared_ptr<const SegmentReader>> All() const;
  // A writer for a new segment in this directory; call Add with Finish()'s path when done.
  Result<std::unique_ptr<SegmentWriter>> NewWriter() const;
  const SegmentWriterOptions& writer_options() const { return options_.writer; }
  // Opens a finished segment file in this directory and makes it visible to Select.
  Status Add(const std::string& path);
  // Writes a whole segment file's bytes (already checked, see CheckSegmentImage) as NAME.seg
  // crash-safely (WriteSegmentImage) and adds it. Returns its path; AlreadyExists, with nothing
  // written, when NAME.seg exists. Blocking: a worker or consumer thread.
  Result<std::string> Install(std::string_view file, const SegmentName& name);

  // Replicas (the cluster consumer's own copy, segment.replicate[_file] from peers). Each returns
  // the records written or found stored; IOError/ResourceExhausted when the disk fails (nothing
  // torn is left where Select looks). Blocking: a worker, disk pool or consumer thread.
  //
  // Writes sorted, distinct records as one segment (more when a segment of the same name exists:
  // the range is split until every part is new or, down to one record, already there).
  Result<uint64_t> WriteReplica(std::span<const std::string_view> records);
  // Installs a segment this node encoded from `records` (sorted, distinct; the image's records).
  // When a segment of its name exists: done if that file holds the same bytes, else as
  // WriteReplica(records).
  Result<uint64_t> InstallReplica(const SegmentImage& image, std::span<const std::string_view> records);
  // Installs segment file bytes received from a peer: CheckSegmentImage (Corruption, nothing
  // written, when they fail it), then as InstallReplica, decoding the records only when the name
  // is taken by a different file.
  Result<uint64_t> InstallReplicaFile(std::string_view file);
  // A copy from a peer's repair or rebalance (segment.copy): the file as InstallReplicaFile, but
  // what is noted is `claims`, the batches the sender says its records make up (each within the
  // file's range, or the file and all of them within one placement bucket: InvalidArgument else).
  Result<uint64_t> InstallCopy(std::string_view file, const BatchClaims& claims);
  // Removes a segment from the set and unlinks its file (compaction, retention).
  Status Remove(const std::string& path);
  // Moves a segment aside into quarantine/ (whole-file failures: footer, index, name).
  void Quarantine(const std::string& path, const Status& why);
  // A block of `segment` (one of this store's) failed with Corruption `why`: marks it bad in the
  // reader (every reader steps over it), and the first time counts it
  // (oklog_store_blocks_quarantined_total) and logs file, block, byte range, ULIDs and reason.
  // A range not known as a gap becomes one: the batches overlapping it leave the holdings (so
  // repair brings them back from a store with a good copy) and gaps.log notes it. Any thread.
  void MarkBlockBad(const SegmentReader& segment, size_t block, const Status& why);
  // The gaps overlapping [from, to] this store has not got back (healing first those whose
  // batches are all held again): a query over them is incomplete.
  std::vector<Gap> UnhealedGaps(const Ulid& from, const Ulid& to) const;
  // Compaction and retention: opens the finished segment files `outputs` and, in one step under
  // the lock, removes `inputs` (by identity; ones already gone are ignored) and adds the outputs,
  // so a Select sees either all the inputs or all the outputs, never both or neither. Files are
  // not touched: the caller unlinks or moves the inputs' files afterwards. On failure to open an
  // output nothing changes.
  Status Swap(const std::vector<std::shared_ptr<const SegmentReader>>& inputs,
              const std::vector<std::string>& outputs);

  // The replicated batches this store holds (holdings.h): every replica path above notes its
  // batch; Remove and Swap drop the batches wholly older than the oldest segment left.
  Holdings* holdings() const { return holdings_.get(); }

  size_t segment_count() const;
  uint64_t file_bytes() const;
  uint64_t quarantined() const { return quarantined_->Value(); }
  uint64_t blocks_quarantined() const { return blocks_quarantined_->Value(); }
  Gaps* gaps() const { return gaps_.get(); }
  // Directory entries Open skipped because they are not regular files.
  uint64_t skipped_files() const { return skipped_files_->Value(); }

 private:
  StoreLog(std::string dir, StoreLogOptions options, Registry* metrics);
  Result<uint64_t> WriteReplicaParts(std::span<const std::string_view> records);
  Result<uint64_t> StoreCheckedFile(std::string_view file, const SegmentImageInfo& info, bool note);
  void DropExpiredHoldings();  // takes mu_ (callers must not hold it)
  std::string dir_;
  StoreLogOptions options_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<const SegmentReader>> segments_;  // sorted by low
  std::unique_ptr<Holdings> holdings_;
  std::unique_ptr<Gaps> gaps_;
  Counter* quarantined_;
  Counter* blocks_quarantined_;
  Counter* skipped_files_;
  Gauge* segments_gauge_;
  Gauge* bytes_gauge_;
};

}  // namespace oklog
