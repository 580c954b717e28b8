#include "common/fs/fault_injection_env.h"

#include <algorithm>

namespace oklog {
namespace {

std::string DirOf(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

const char* OpName(FsOp op) {
  switch (op) {
    case FsOp::kCreate: return "create";
    case FsOp::kWrite: return "write";
    case FsOp::kSync: return "fdatasync";
    case FsOp::kRename: return "rename";
    case FsOp::kRemove: return "unlink";
    case FsOp::kTruncate: return "truncate";
    case FsOp::kSyncDir: return "fsync";
  }
  return "?";
}

}  // namespace

class FaultInjectionEnv::File final : public WritableFile {
 public:
  File(FaultInjectionEnv* env, std::unique_ptr<WritableFile> base) : env_(env), base_(std::move(base)) {}
  Status Append(std::string_view data) override { return env_->Append(this, data); }
  Status Sync() override { return env_->Sync(this); }
  Status Close() override { return base_->Close(); }
  const std::string& path() const override { return base_->path(); }
  WritableFile* base() { return base_.get(); }

 private:
  FaultInjectionEnv* const env_;
  std::unique_ptr<WritableFile> base_;
};

void FaultInjectionEnv::Inject(Fault fault) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.push_back(Armed{std::move(fault)});
}

void FaultInjectionEnv::ClearFaults() {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.clear();
  crash_after_.reset();
  crashed_ = false;
}

void FaultInjectionEnv::CrashAfter(int ops) {
  std::lock_guard<std::mutex> lock(mu_);
  crash_after_ = ops;
  crashed_ = ops <= 0;
}

bool FaultInjectionEnv::crashed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return crashed_;
}

int FaultInjectionEnv::failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

int FaultInjectionEnv::mutating_ops() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_;
}

Status FaultInjectionEnv::Admit(FsOp op, const std::string& path, const std::string& other, bool* torn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (torn) *torn = false;
  if (crashed_) {
    ++failures_;
    return Status::FromErrno(std::string(OpName(op)) + " (simulated crash)", path, EIO);
  }
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    const Fault& f = it->fault;
    if (f.op != op) continue;
    if (!f.path_contains.empty() && path.find(f.path_contains) == std::string::npos &&
        other.find(f.path_contains) == std::string::npos)
      continue;
    if (it->seen++ < f.after) continue;
    const int error = f.error;
    if (torn) *torn = f.torn;
    if (f.times > 0 && it->seen - f.after >= f.times) faults_.erase(it);
    ++failures_;
    return Status::FromErrno(std::string(OpName(op)) + " (injected)", path, error);
  }
  ++ops_;
  if (crash_after_ && --*crash_after_ <= 0) crashed_ = true;
  return Status::Ok();
}

Result<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewWritableFile(const std::string& path) {
  OKLOG_RETURN_IF_ERROR(Admit(FsOp::kCreate, path));
  OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> base, base_->NewWritableFile(path));
  {
    std::lock_guard<std::mutex> lock(mu_);
    files_[path] = FileState{};
    dir_ops_.push_back(DirOp{DirOf(path), path, ""});
  }
  return std::unique_ptr<WritableFile>(new File(this, std::move(base)));
}

Status FaultInjectionEnv::Append(File* f, std::string_view data) {
  // A torn write lands half its bytes before failing (never after the crash: nothing lands).
  bool torn = false;
  Status admit = Admit(FsOp::kWrite, f->path(), "", &torn);
  if (!admit.ok() && !torn) return admit;
  std::string_view part = admit.ok() ? data : data.substr(0, data.size() / 2);
  Status s = f->base()->Append(part);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(f->path());
    if (it != files_.end()) it->second.size += part.size();
  }
  return admit.ok() ? s : admit;
}

Status FaultInjectionEnv::Sync(File* f) {
  OKLOG_RETURN_IF_ERROR(Admit(FsOp::kSync, f->path()));
  OKLOG_RETURN_IF_ERROR(f->base()->Sync());
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(f->path());
  if (it != files_.end()) it->second.synced = it->second.size;
  return Status::Ok();
}

void FaultInjectionEnv::Renamed(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(from);
  if (it != files_.end()) {
    files_[to] = it->second;
    files_.erase(from);
  } else {
    files_.erase(to);  // replaced by a file that was durable all along
  }
  dir_ops_.push_back(DirOp{DirOf(to), to, from});
}

Status FaultInjectionEnv::RenameFile(const std::string& from, const std::string& to) {
  OKLOG_RETURN_IF_ERROR(Admit(FsOp::kRename, from, to));
  OKLOG_RETURN_IF_ERROR(base_->RenameFile(from, to));
  Renamed(from, to);
  return Status::Ok();
}

Status FaultInjectionEnv::RenameNoReplace(const std::string& from, const std::string& to) {
  OKLOG_RETURN_IF_ERROR(Admit(FsOp::kRename, from, to));
  OKLOG_RETURN_IF_ERROR(base_->RenameNoReplace(from, to));
  Renamed(from, to);
  return Status::Ok();
}

Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  OKLOG_RETURN_IF_ERROR(Admit(FsOp::kRemove, path));
  OKLOG_RETURN_IF_ERROR(base_->RemoveFile(path));
  std::lock_guard<std::mutex> lock(mu_);
  files_.erase(path);
  return Status::Ok();
}

Status FaultInjectionEnv::TruncateFile(const std::string& path, uint64_t size) {
  OKLOG_RETURN_IF_ERROR(Admit(FsOp::kTruncate, path));
  OKLOG_RETURN_IF_ERROR(base_->TruncateFile(path, size));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(path);
  if (it != files_.end()) {
    it->second.size = size;
    it->second.synced = std::min(it->second.synced, size);
  }
  return Status::Ok();
}

Status FaultInjectionEnv::SyncDir(const std::string& dir) {
  OKLOG_RETURN_IF_ERROR(Admit(FsOp::kSyncDir, dir));
  OKLOG_RETURN_IF_ERROR(base_->SyncDir(dir));
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  std::lock_guard<std::mutex> lock(mu_);
  dir_ops_.erase(std::remove_if(dir_ops_.begin(), dir_ops_.end(), [&](const DirOp& op) { return op.dir == d; }),
                 dir_ops_.end());
  return Status::Ok();
}

Status FaultInjectionEnv::DropUnsyncedFileData() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [path, st] : files_) {
    if (st.size == st.synced) continue;
    Result<FileInfo> info = base_->GetFileInfo(path);
    if (info.status().code() == Code::kNotFound) continue;
    if (!info.ok()) return info.status();
    if (info->size > st.synced) OKLOG_RETURN_IF_ERROR(base_->TruncateFile(path, st.synced));
    st.size = st.synced;
  }
  return Status::Ok();
}

Status FaultInjectionEnv::UndoUnsyncedDirOps() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = dir_ops_.rbegin(); it != dir_ops_.rend(); ++it) {
    Status s = it->from.empty() ? base_->RemoveFile(it->path) : base_->RenameFile(it->path, it->from);
    if (!s.ok() && s.code() != Code::kNotFound) return s;
    if (s.ok() && !it->from.empty()) {
      auto f = files_.find(it->path);
      if (f != files_.end()) {
        files_[it->from] = f->second;
        files_.erase(it->path);
      }
    }
  }
  dir_ops_.clear();
  return Status::Ok();
}

Status FaultInjectionEnv::SimulatePowerLoss() {
  OKLOG_RETURN_IF_ERROR(DropUnsyncedFileData());
  OKLOG_RETURN_IF_ERROR(UndoUnsyncedDirOps());
  std::lock_guard<std::mutex> lock(mu_);
  files_.clear();
  faults_.clear();
  crash_after_.reset();
  crashed_ = false;
  ops_ = 0;
  return Status::Ok();
}

Result<uint64_t> FaultInjectionEnv::FreeBytes(const std::string& path) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_bytes_) return *free_bytes_;
  }
  return base_->FreeBytes(path);
}

void FaultInjectionEnv::SetFreeBytes(std::optional<uint64_t> bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  free_bytes_ = bytes;
}

}  // namespace oklog
