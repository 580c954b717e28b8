// FaultInjectionEnv (tests only: library oklog_fs_testing, never linked into the node): an Env
// over another that
//   - fails chosen operations with a chosen errno (ENOSPC, EIO, ...), optionally only for paths
//     containing a substring, optionally after N successful ones, for a number of times;
//   - "crashes" after N more mutating operations: from then on every create, write, sync,
//     rename, remove, truncate and directory sync fails with EIO and changes nothing, as if the
//     process had died there;
//   - remembers, for each file it created, how many bytes were synced, and for each directory,
//     the creations and renames since its last SyncDir, so SimulatePowerLoss() can put the disk
//     in the state a power cut would leave: files cut back to their synced size, unsynced
//     renames undone and unsynced creations removed (as LevelDB's db/fault_injection_test.cc).
// Not modelled: a removal or a replacing rename is never undone (the lost file stays lost).
// Reads are never failed. Thread-safe. Files it hands out must not outlive it.
#pragma once

#include <cerrno>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/fs/env.h"

namespace oklog {

enum class FsOp { kCreate, kWrite, kSync, kRename, kRemove, kTruncate, kSyncDir };

struct Fault {
  FsOp op = FsOp::kWrite;
  int error = EIO;            // errno reported (ENOSPC becomes ResourceExhausted)
  std::string path_contains;  // only paths containing this (for a rename: either path); "" = any
  int after = 0;              // matching operations that succeed before the first failure
  int times = -1;             // failures before the fault lifts by itself; -1 = until cleared
  // kWrite only: a failing Append first writes the first half of its bytes (a torn write).
  bool torn = false;
};

class FaultInjectionEnv final : public Env {
 public:
  explicit FaultInjectionEnv(Env* base = Env::Default()) : base_(base) {}
  FaultInjectionEnv(const FaultInjectionEnv&) = delete;
  FaultInjectionEnv& operator=(const FaultInjectionEnv&) = delete;

  // Adds a fault; several may be armed, for different or the same operations.
  void Inject(Fault fault);
  // Disarms every fault and the crash (tracking of synced state continues).
  void ClearFaults();
  // After `ops` more successful mutating operations, the "process" dies (see above).
  void CrashAfter(int ops);
  bool crashed() const;
  // How many operations failed because of a fault or the crash.
  int failures() const;
  // Mutating operations that went through since construction or the last SimulatePowerLoss.
  int mutating_ops() const;

  // Cuts every file this Env wrote to the size it had at its last Sync (0 if never synced).
  Status DropUnsyncedFileData();
  // Undoes, newest first, renames and creations not yet made durable by a SyncDir of their
  // directory.
  Status UndoUnsyncedDirOps();
  // DropUnsyncedFileData + UndoUnsyncedDirOps, then forgets all tracking, faults and the crash:
  // the Env is a freshly booted machine over what "survived".
  Status SimulatePowerLoss();

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    return base_->NewRandomAccessFile(path);
  }
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status RenameNoReplace(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Status TruncateFile(const std::string& path, uint64_t size) override;
  Status SetModifiedTime(const std::string& path, std::chrono::system_clock::time_point t) override {
    return base_->SetModifiedTime(path, t);
  }
  Status GetChildren(const std::string& dir, std::vector<std::string>* names) override {
    return base_->GetChildren(dir, names);
  }
  Result<FileInfo> GetFileInfo(const std::string& path) override { return base_->GetFileInfo(path); }
  Status SyncDir(const std::string& dir) override;
  Status CreateDirs(const std::string& dir) override { return base_->CreateDirs(dir); }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override { return base_->LockFile(path); }
  // The base Env's figure, unless SetFreeBytes chose one.
  Result<uint64_t> FreeBytes(const std::string& path) override;
  // Every FreeBytes answers `bytes` from now on; nullopt goes back to the base Env's figure.
  void SetFreeBytes(std::optional<uint64_t> bytes);

 private:
  class File;
  struct FileState {
    uint64_t size = 0;    // bytes appended through this Env
    uint64_t synced = 0;  // of which made durable by Sync
  };
  struct DirOp {
    std::string dir;   // whose SyncDir makes it durable
    std::string path;  // created, or renamed to
    std::string from;  // renamed from; empty for a creation
  };

  // Decides whether an operation on these paths runs: an error Status for an injected fault or
  // after the crash (counting it), OK otherwise (counting the operation toward the crash).
  // *torn (if given) says whether the fault that fired asks for a torn write.
  Status Admit(FsOp op, const std::string& path, const std::string& other = "", bool* torn = nullptr);
  void Renamed(const std::string& from, const std::string& to);
  // File callbacks.
  Status Append(File* f, std::string_view data);
  Status Sync(File* f);

  Env* const base_;
  mutable std::mutex mu_;
  std::optional<uint64_t> free_bytes_;  // SetFreeBytes
  struct Armed {
    Fault fault;
    int seen = 0;  // matching operations so far
  };
  std::vector<Armed> faults_;
  std::optional<int> crash_after_;  // mutating operations left before the crash
  bool crashed_ = false;
  int failures_ = 0;
  int ops_ = 0;
  std::map<std::string, FileState> files_;
  std::vector<DirOp> dir_ops_;
};

}  // namespace oklog
