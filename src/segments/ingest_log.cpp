#include "segments/ingest_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/file_util.h"
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
Status TruncateToLastRecord(const std::string& path, uint64_t* size_out) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open", path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return Status::FromErrno("stat", path, e);
  }
  off_t end = st.st_size;
  char buf[65536];
  off_t keep = 0;
  while (end > 0) {
    off_t start = end > static_cast<off_t>(sizeof buf) ? end - static_cast<off_t>(sizeof buf) : 0;
    ssize_t n = ::pread(fd, buf, static_cast<size_t>(end - start), start);
    if (n <= 0) break;
    void* lf = memrchr(buf, '\n', static_cast<size_t>(n));
    if (lf) {
      keep = start + (static_cast<char*>(lf) - buf) + 1;
      break;
    }
    end = start;
  }
  Status s;
  if (keep != st.st_size && ::ftruncate(fd, keep) != 0) s = Status::FromErrno("truncate", path, errno);
  ::close(fd);
  *size_out = static_cast<uint64_t>(keep);
  return s;
}

}  // namespace

ActiveSegment::ActiveSegment(std::string dir, std::string name, int fd)
    : dir_(std::move(dir)), name_(std::move(name)), fd_(fd), created_(std::chrono::steady_clock::now()) {
  buf_.reserve(kWriteThrough + 64 * 1024);
}

ActiveSegment::~ActiveSegment() {
  if (fd_ >= 0) ::close(fd_);
}

Status ActiveSegment::Append(const char* data, size_t n) {
  buf_.append(data, n);
  bytes_ += n;
  if (buf_.size() >= kWriteThrough) return WriteOut();
  return Status::Ok();
}

Status ActiveSegment::WriteOut() {
  if (buf_.empty()) return Status::Ok();
  Status s = WriteAll(fd_, buf_.data(), buf_.size(), dir_ + "/" + name_ + kActive);
  buf_.clear();
  return s;
}

Status ActiveSegment::Sync() {
  OKLOG_RETURN_IF_ERROR(WriteOut());
  if (::fdatasync(fd_) != 0) return Status::FromErrno("fdatasync", dir_ + "/" + name_ + kActive, errno);
  return Status::Ok();
}

IngestLog::IngestLog(std::string dir, Options options, Registry* m) : dir_(std::move(dir)), options_(options) {
  flushes_ = m->NewCounterFamily("oklog_ingest_writer_flushes_total", "Active segments flushed, by reason.",
                                 {"reason"});
  committed_segments_ = m->NewCounter("oklog_ingest_committed_segments", "Segments committed by consumers.");
  committed_bytes_ = m->NewCounter("oklog_ingest_committed_bytes", "Bytes of segments committed by consumers.");
  failed_segments_ = m->NewCounter("oklog_ingest_failed_segments", "Segments failed back (explicitly or timed out).");
  flush_size_ = m->NewHistogram("oklog_ingest_segment_flush_size_bytes", "Size of flushed segments.",
                                ExponentialBuckets(16384, 2, 11));
  flush_age_ = m->NewHistogram("oklog_ingest_segment_flush_age_seconds", "Age of segments when flushed.",
                               DefaultLatencyBuckets());
}

IngestLog::~IngestLog() {
  if (lock_fd_ >= 0) {
    ::unlink((dir_ + "/LOCK").c_str());
    ::flock(lock_fd_, LOCK_UN);
    ::close(lock_fd_);
  }
}

Result<std::unique_ptr<IngestLog>> IngestLog::Open(const std::string& dir, Options options, Registry* metrics) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("creating " + dir + ": " + ec.message());
  std::unique_ptr<IngestLog> log(new IngestLog(dir, options, metrics));
  std::string lock = dir + "/LOCK";
  log->lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (log->lock_fd_ < 0) return Status::FromErrno("open", lock, errno);
  if (::flock(log->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(log->lock_fd_);
    log->lock_fd_ = -1;
    return Status::Unavailable("ingest directory " + dir + " is locked by another process");
  }
  OKLOG_RETURN_IF_ERROR(log->Recover());
  return log;
}

Status IngestLog::Recover() {
  auto logger = Logger("ingest");
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return Status::FromErrno("opendir", dir_, errno);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  for (const std::string& file : names) {
    std::string path = dir_ + "/" + file;
    for (std::string_view ext : {kActive, kPending, kFlushed}) {
      if (!EndsWith(file, ext)) continue;
      std::string name = file.substr(0, file.size() - ext.size());
      uint64_t size = 0;
      if (ext == kActive) {
        OKLOG_RETURN_IF_ERROR(TruncateToLastRecord(path, &size));
      } else {
        struct stat st;
        if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("stat", path, errno);
        size = static_cast<uint64_t>(st.st_size);
      }
      if (size == 0) {
        ::unlink(path.c_str());
        break;
      }
      if (ext != kFlushed) {
        std::string to = dir_ + "/" + name + kFlushed;
        if (::rename(path.c_str(), to.c_str()) != 0) return Status::FromErrno("rename", path, errno);
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
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("create", path, errno);
  return std::unique_ptr<ActiveSegment>(new ActiveSegment(dir_, name, fd));
}

Status IngestLog::Flush(std::unique_ptr<ActiveSegment> seg, const char* reason) {
  Status s = seg->WriteOut();
  std::string from = dir_ + "/" + seg->name() + kActive;
  if (!s.ok()) {
    // Keep the file: what reached it is recovered at the next start.
    Logger("ingest")->error("flush segment={} failed: {}", seg->name(), s.ToString());
    return s;
  }
  uint64_t bytes = seg->bytes();
  auto age = std::chrono::steady_clock::now() - seg->created();
  std::string name = seg->name();
  seg.reset();  // closes the fd
  if (bytes == 0) {
    ::unlink(from.c_str());
    return Status::Ok();
  }
  std::string to = dir_ + "/" + name + kFlushed;
  if (::rename(from.c_str(), to.c_str()) != 0) return Status::FromErrno("rename", from, errno);
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
    if (::rename(from.c_str(), to.c_str()) != 0) {
      Logger("ingest")->error("claim segment={} failed: {}", it->first, std::strerror(errno));
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
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("unlink", path, errno);
    committed_segments_->Inc();
    committed_bytes_->Inc(it->second.bytes);
    pending_.erase(it);
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
    if (::rename(from.c_str(), to.c_str()) != 0) return Status::FromErrno("rename", from, errno);
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
