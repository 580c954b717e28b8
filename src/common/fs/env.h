// The filesystem seam: every file operation of the storage modules goes through an Env, so a
// test can substitute one that fails or forgets (FaultInjectionEnv, tests only). Env::Default()
// is plain POSIX. Shaped after LevelDB's include/leveldb/env.h, cut down to what src/segments
// uses.
//
// Errors: IOError naming the operation and path; ResourceExhausted for ENOSPC/EDQUOT;
// NotFound when the path does not exist (where stated); AlreadyExists where a call refuses to
// replace. Thread-safe: an Env may be shared by any number of threads; a file object is used
// by one thread at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace oklog {

// An append-only file opened by Env::NewWritableFile. The destructor closes it if Close was not
// called (errors then ignored).
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Writes all bytes straight to the file (write(2), no buffering here), retrying short writes
  // and EINTR. On failure a prefix of the bytes may have reached the file.
  virtual Status Append(std::string_view data) = 0;
  // fdatasync: what was appended so far survives a crash.
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
  virtual const std::string& path() const = 0;
};

// A file opened for positioned reads. Read is safe from several threads at once.
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads up to n bytes at offset into dst; *got is what was read, less than n only at the end
  // of the file.
  virtual Status Read(uint64_t offset, size_t n, char* dst, size_t* got) const = 0;
  // The file's current size.
  virtual Result<uint64_t> Size() const = 0;
  virtual const std::string& path() const = 0;
};

// An exclusive advisory lock on a file, released (and the descriptor closed) by the destructor.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

struct FileInfo {
  uint64_t size = 0;
  std::chrono::system_clock::time_point mtime;
  bool regular = false;  // a regular file, or a symlink to one (not a directory, FIFO, socket, device)
};

class Env {
 public:
  virtual ~Env() = default;
  // The process-wide POSIX Env. Never deleted.
  static Env* Default();

  // Creates path, which must not exist (AlreadyExists otherwise), for appending.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  // NotFound when path does not exist. InvalidArgument when it is not a regular file (a FIFO,
  // socket, device or directory, or a symlink to one): such a file is never opened in a way that
  // can block (a FIFO without a writer) and a device is not opened at all.
  virtual Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) = 0;
  // Renames, replacing `to` if it exists.
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // Renames, never replacing `to`: AlreadyExists when it exists.
  virtual Status RenameNoReplace(const std::string& from, const std::string& to) = 0;
  // NotFound when path does not exist.
  virtual Status RemoveFile(const std::string& path) = 0;
  // Cuts (or extends with zeros) the file to size bytes.
  virtual Status TruncateFile(const std::string& path, uint64_t size) = 0;
  // Sets the modification time (retention's trash clock).
  virtual Status SetModifiedTime(const std::string& path, std::chrono::system_clock::time_point t) = 0;
  // The names in dir, without "." and "..", in no particular order.
  virtual Status GetChildren(const std::string& dir, std::vector<std::string>* names) = 0;
  // NotFound when path does not exist.
  virtual Result<FileInfo> GetFileInfo(const std::string& path) = 0;
  // fsync of a directory: renames, creations and removals inside it become durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  // Creates dir and its missing parents; OK when it exists.
  virtual Status CreateDirs(const std::string& dir) = 0;
  // Creates path if needed and takes an exclusive lock on it: Unavailable when another process
  // (or another FileLock in this one) holds it; InvalidArgument when path is not a regular file.
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;
  // Bytes an unprivileged writer may still use on the filesystem holding path (statvfs
  // f_bavail * f_frsize): what the disk guards (common/fs/disk_guard.h) compare to their floor.
  virtual Result<uint64_t> FreeBytes(const std::string& path) = 0;
};

// Appends the whole file to *out after its current contents; on failure *out is as it was.
Status AppendFileContents(Env* env, const std::string& path, std::string* out);

}  // namespace oklog
