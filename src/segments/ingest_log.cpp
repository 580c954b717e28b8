#include "segments/ingest_log.h"

#include <cstring>

#include "common/log.h"
#include "common/ulid.h"

namespace oklog {
namespace {

constexpr size_t kWriteThrough = 1 << 20;
constexpr const char* kActive = ".active";
constexpr const char* kFlushed = ".flushed";
constexpr const char* kPending = ".pending";

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Process-wide source of segment names: increasing and unique.
std::string NewSegmentName() {
  static std::mutex mu;
  static UlidStream stream;
  std::lock_guard<std::mutex> lock(mu);
  return stream.Next(NowUnixMs()).ToString();
}

// Cuts a crashed .active file back to its last LF, so a torn record never reaches a store.
Status TruncateToLastRecord(Env* env, const std::string& path, uint64_t* size_out) {
  OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, env->NewRandomAccessFile(path));
  OKLOG_ASSIGN_OR_RETURN(const uint64_t size, file->Size());
  uint64_t end = size;
  char buf[65536];
  uint64_t keep = 0;
  while (end > 0) {
    uint64_t start = end > sizeof buf ? end - sizeof buf : 0;
    size_t n = 0;
    if (!file->Read(start, static_cast<size_t>(end - start), buf, &n).ok() || n == 0) break;
    void* lf = memrchr(buf, '\n', n);
    if (lf) {
      keep = start + static_cast<uint64_t>(static_cast<char*>(lf) - buf) + 1;
      break;
    }
    end = start;
  }
  file.reset();
  Status s;
  if (keep != size) s = env->TruncateFile(path, keep);
  *size_out = keep;
  return s;
}

}  // namespace

ActiveSegment::ActiveSegment(Env* env, std::string dir, std::string name, std::unique_ptr<WritableFile> file)
    : env_(env),
      dir_(std::move(dir)),
      name_(std::move(name)),
      file_(std::move(file)),
      created_(std::chrono::steady_clock::now()) {
  buf_.reserve(kWriteThrough + 64 * 1024);
}

ActiveSegment::~ActiveSegment() = default;

Status ActiveSegment::Append(const char* data, size_t n) {
  if (!error_.ok()) return error_;
  buf_.append(data, n);
  bytes_ += n;
  if (buf_.size() >= kWriteThrough) return WriteOut();
  return Status::Ok();
}

Status ActiveSegment::WriteOut() {
  if (!error_.ok()) return error_;
  if (buf_.empty()) return Status::Ok();
  Status s = file_->Append(buf_);
  if (s.ok()) written_bytes_ += buf_.size();
  else error_ = s;
  buf_.clear();
  return s;
}

Status ActiveSegment::Sync() {
  OKLOG_RETURN_IF_ERROR(WriteOut());
  Status s = file_->Sync();
  if (s.ok() && !dir_synced_) {
    s = env_->SyncDir(dir_);
    dir_synced_ = s.ok();
  }
  if (!s.ok()) error_ = s;
  return s;
}

IngestLog::IngestLog(std::string dir, Options options, Registry* m) : dir_(std::move(dir)), options_(options) {
  flushes_ = m->NewCounterFamily("oklog_ingest_writer_flushes_total", "Active segments flushed, by reason.",
                                 {"reason"});
  committed_segments_ = m->NewCounter("oklog_ingest_committed_segments", "Segments committed by consumers.");
  committed_bytes_ = m->NewCounter("oklog_ingest_committed_bytes", "Bytes of segments committed by consumers.");
  skipped_files_ = m->NewCounter("oklog_ingest_skipped_files_total",
                                 "Entries of the ingest directory with a segment's name skipped at start: not regular "
                                 "files (FIFOs, sockets, devices, directories).");
  failed_segments_ = m->NewCounter("oklog_ingest_failed_segments", "Segments failed back (explicitly or timed out).");
  flush_size_ = m->NewHistogram("oklog_ingest_segment_flush_size_bytes", "Size of flushed segments.",
                                ExponentialBuckets(16384, 2, 11));
  flush_age_ = m->NewHistogram("oklog_ingest_segment_flush_age_seconds", "Age of segments when flushed.",
                               DefaultLatencyBuckets());
}

IngestLog::~IngestLog() {
  if (lock_) {
    (void)options_.env->RemoveFile(dir_ + "/LOCK");  // best effort: a stale LOCK file is harmless
    lock_.reset();
  }
}

Result<std::unique_ptr<IngestLog>> IngestLog::Open(const std::string& dir, Options options, Registry* metrics) {
  if (options.env == nullptr) return Status::InvalidArgument("no Env");
  OKLOG_RETURN_IF_ERROR(options.env->CreateDirs(dir));
  std::unique_ptr<IngestLog> log(new IngestLog(dir, options, metrics));
  auto lock = options.env->LockFile(dir + "/LOCK");
  if (lock.status().code() == Code::kUnavailable)
    return Status::Unavailable("ingest directory " + dir + " is locked by another process");
  if (!lock.ok()) return lock.status();
  log->lock_ = std::move(lock).value();
  OKLOG_RETURN_IF_ERROR(log->Recover());
  return log;
}

Status IngestLog::Recover() {
  auto logger = Logger("ingest");
  Env* env = options_.env;
  std::vector<std::string> names;
  OKLOG_RETURN_IF_ERROR(env->GetChildren(dir_, &names));
  for (const std::string& file : names) {
    std::string path = dir_ + "/" + file;
    for (std::string_view ext : {kActive, kPending, kFlushed}) {
      if (!EndsWith(file, ext)) continue;
      std::string name = file.substr(0, file.size() - ext.size());
      // Only regular files are segments: a FIFO (whose open would block), socket, device or
      // directory under a segment's name is left alone, logged and counted.
      OKLOG_ASSIGN_OR_RETURN(FileInfo info, env->GetFileInfo(path));
      if (!info.regular) {
        skipped_files_->Inc();
        logger->warn("skipping file={} in ingest directory: not a regular file", path);
        break;
      }
      uint64_t size = info.size;
      if (ext == kActive) OKLOG_RETURN_IF_ERROR(TruncateToLastRecord(env, path, &size));
      if (size == 0) {
        (void)env->RemoveFile(path);  // best effort: an empty file is skipped again next time
        break;
      }
      if (ext != kFlushed) {
        std::string to = dir_ + "/" + name + kFlushed;
        OKLOG_RETURN_IF_ERROR(env->RenameFile(path, to));
        logger->info("recovered segment={} from={} bytes={}", name, std::string(ext), size);
      }
      flushed_[name] = size;
      break;
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<ActiveSegment>> IngestLog::NewActive() {
  std::string name = NewSegmentName();
  std::string path = dir_ + "/" + name + kActive;
  OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, options_.env->NewWritableFile(path));
  return std::unique_ptr<ActiveSegment>(new ActiveSegment(options_.env, dir_, name, std::move(file)));
}

Status IngestLog::Flush(std::unique_ptr<ActiveSegment> seg, const char* reason) {
  std::string from = dir_ + "/" + seg->name() + kActive;
  Status s = seg->WriteOut();
  uint64_t bytes = seg->bytes();
  if (!seg->error_.ok()) {
    // A write failed: keep what reached the file whole, cut off a torn record after it, and
    // drop what was still buffered (never acknowledged).
    bytes = seg->written_bytes_;
    s = options_.env->TruncateFile(from, bytes);
  }
  if (!s.ok()) {
    // Keep the file: what reached it is recovered at the next start.
    Logger("ingest")->error("flush segment={} failed: {}", seg->name(), s.ToString());
    return s;
  }
  auto age = std::chrono::steady_clock::now() - seg->created();
  std::string name = seg->name();
  seg.reset();  // closes the file
  if (bytes == 0) {
    (void)options_.env->RemoveFile(from);  // best effort: Recover deletes an empty .active
    return Status::Ok();
  }
  std::string to = dir_ + "/" + name + kFlushed;
  OKLOG_RETURN_IF_ERROR(options_.env->RenameFile(from, to));
  flushes_->With({reason})->Inc();
  flush_size_->Observe(static_cast<double>(bytes));
  flush_age_->Observe(std::chrono::duration<double>(age).count());
  {
    std::lock_guard<std::mutex> lock(mu_);
    flushed_[name] = bytes;
  }
  cv_.notify_all();
  return Status::Ok();
}

std::vector<PendingSegment> IngestLog::Claim(uint64_t max_bytes) {
  std::vector<PendingSegment> out;
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = 0;
  auto now = std::chrono::steady_clock::now();
  for (auto it = flushed_.begin(); it != flushed_.end();) {
    if (!out.empty() && total + it->second > max_bytes) break;
    std::string from = dir_ + "/" + it->first + kFlushed;
    std::string to = dir_ + "/" + it->first + kPending;
    if (Status s = options_.env->RenameFile(from, to); !s.ok()) {
      Logger("ingest")->error("claim segment={} failed: {}", it->first, s.ToString());
      ++it;
      continue;
    }
    out.push_back(PendingSegment{it->first, to, it->second});
    pending_[it->first] = Claimed{it->second, now};
    total += it->second;
    it = flushed_.erase(it);
  }
  return out;
}

Status IngestLog::Commit(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return Status::NotFound("no pending segment " + id);
    std::string path = dir_ + "/" + id + kPending;
    if (Status s = options_.env->RemoveFile(path); !s.ok() && s.code() != Code::kNotFound) return s;
    committed_segments_->Inc();
    committed_bytes_->Inc(it->second.bytes);
    pending_.erase(it);
    last_commit_ = std::chrono::steady_clock::now();
  }
  if (on_commit_) on_commit_(id);
  return Status::Ok();
}

Status IngestLog::Fail(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return Status::NotFound("no pending segment " + id);
    std::string from = dir_ + "/" + id + kPending;
    std::string to = dir_ + "/" + id + kFlushed;
    OKLOG_RETURN_IF_ERROR(options_.env->RenameFile(from, to));
    flushed_[id] = it->second.bytes;
    pending_.erase(it);
    failed_segments_->Inc();
  }
  cv_.notify_all();
  return Status::Ok();
}

int IngestLog::ExpirePending(std::chrono::steady_clock::time_point now) {
  std::vector<std::string> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, c] : pending_)
      if (now - c.since >= options_.pending_timeout) expired.push_back(id);
  }
  int n = 0;
  for (const auto& id : expired) {
    if (Fail(id).ok()) {
      ++n;
      Logger("ingest")->warn("pending segment={} timed out; returned to flushed", id);
    }
  }
  return n;
}

bool IngestLog::WaitForFlushed(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return shutdown_ || !flushed_.empty(); });
  return !flushed_.empty() && !shutdown_;
}

void IngestLog::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

IngestLog::Backlog IngestLog::backlog() const {
  std::lock_guard<std::mutex> lock(mu_);
  Backlog b;
  b.last_commit = last_commit_;
  b.segments = flushed_.size() + pending_.size();
  std::string oldest;
  for (const auto& [name, bytes] : flushed_) b.bytes += bytes;
  for (const auto& [name, c] : pending_) b.bytes += c.bytes;
  if (!flushed_.empty()) oldest = flushed_.begin()->first;
  if (!pending_.empty() && (oldest.empty() || pending_.begin()->first < oldest)) oldest = pending_.begin()->first;
  if (oldest.size() == Ulid::kTextSize)
    if (auto u = Ulid::ParseCanonical(oldest.data())) b.oldest_unix_ms = u->unix_ms();
  return b;
}

size_t IngestLog::flushed_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return flushed_.size();
}

size_t IngestLog::pending_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

uint64_t IngestLog::flushed_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = 0;
  for (const auto& [name, b] : flushed_) total += b;
  return total;
}

}  // namespace oklog
