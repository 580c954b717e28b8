// Env::Default(): the POSIX calls the storage modules made directly before the seam existed,
// with the same flags (O_CLOEXEC everywhere, O_EXCL creation, fdatasync for files, fsync for
// directories, flock for the ingest LOCK). Files are opened for reading (and the LOCK) only
// when they are regular files, with O_NONBLOCK, so a FIFO in a data directory never blocks.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "common/fs/env.h"

namespace oklog {
namespace {

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Append(std::string_view data) override {
    const char* p = data.data();
    size_t n = data.size();
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("write", path_, errno);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return Status::Ok();
  }
  Status Sync() override {
    if (::fdatasync(fd_) != 0) return Status::FromErrno("fdatasync", path_, errno);
    return Status::Ok();
  }
  Status Close() override {
    if (fd_ < 0) return Status::Ok();
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return Status::FromErrno("close", path_, errno);
    return Status::Ok();
  }
  const std::string& path() const override { return path_; }

 private:
  const std::string path_;
  int fd_;
};

class PosixRandomAccessFile final : public RandomAccessFile {
 public:
  PosixRandomAccessFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }
  Status Read(uint64_t offset, size_t n, char* dst, size_t* got) const override {
    *got = 0;
    while (*got < n) {
      ssize_t r = ::pread(fd_, dst + *got, n - *got, static_cast<off_t>(offset + *got));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("pread", path_, errno);
      }
      if (r == 0) break;
      *got += static_cast<size_t>(r);
    }
    return Status::Ok();
  }
  Result<uint64_t> Size() const override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return Status::FromErrno("fstat", path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }
  const std::string& path() const override { return path_; }

 private:
  const std::string path_;
  const int fd_;
};

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }

 private:
  const int fd_;
};

const char* FileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

Status NotRegular(const std::string& path, mode_t mode) {
  return Status::InvalidArgument("not a regular file (" + std::string(FileKind(mode)) + "): " + path);
}

// After an O_NONBLOCK open: InvalidArgument unless fd is a regular file, which then gets
// blocking reads back (O_NONBLOCK was only there to keep open() from waiting on a FIFO).
Status CheckRegularAndBlock(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno("fstat", path, errno);
  if (!S_ISREG(st.st_mode)) return NotRegular(path, st.st_mode);
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) return Status::FromErrno("fcntl", path, errno);
  return Status::Ok();
}

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST) return Status::AlreadyExists("file exists: " + path);
      return Status::FromErrno("create", path, errno);
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    // stat first, so a device is never opened at all (opening one may have effects); then
    // O_NONBLOCK, so a FIFO swapped in after the stat cannot make open() wait for a writer,
    // and fstat to judge what was really opened.
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return Status::NotFound("no file " + path);
      return Status::FromErrno("stat", path, errno);
    }
    if (!S_ISREG(st.st_mode)) return NotRegular(path, st.st_mode);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      if (errno == ENOENT) return Status::NotFound("no file " + path);
      return Status::FromErrno("open", path, errno);
    }
    if (Status s = CheckRegularAndBlock(fd, path); !s.ok()) {
      ::close(fd);
      return s;
    }
    return std::unique_ptr<RandomAccessFile>(new PosixRandomAccessFile(path, fd));
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return Status::FromErrno("rename", from, errno);
    return Status::Ok();
  }

  Status RenameNoReplace(const std::string& from, const std::string& to) override {
    // RENAME_NOREPLACE, or link + unlink where the filesystem lacks it.
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return Status::Ok();
    int err = errno;
    if (err == EINVAL || err == ENOSYS) {
      if (::link(from.c_str(), to.c_str()) != 0) {
        err = errno;
      } else {
        ::unlink(from.c_str());
        return Status::Ok();
      }
    }
    if (err == EEXIST) return Status::AlreadyExists("file exists: " + to);
    return Status::FromErrno("rename", to, err);
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) {
      if (errno == ENOENT) return Status::NotFound("no file " + path);
      return Status::FromErrno("unlink", path, errno);
    }
    return Status::Ok();
  }

  Status TruncateFile(const std::string& path, uint64_t size) override {
    if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) return Status::FromErrno("truncate", path, errno);
    return Status::Ok();
  }

  Status SetModifiedTime(const std::string& path, std::chrono::system_clock::time_point t) override {
    const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    struct timespec times[2];
    times[0].tv_sec = times[1].tv_sec = static_cast<time_t>(ns / 1000000000);
    times[0].tv_nsec = times[1].tv_nsec = static_cast<long>(ns % 1000000000);
    if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) return Status::FromErrno("utimensat", path, errno);
    return Status::Ok();
  }

  Status GetChildren(const std::string& dir, std::vector<std::string>* names) override {
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
      if (errno == ENOENT) return Status::NotFound("no directory " + dir);
      return Status::FromErrno("opendir", dir, errno);
    }
    while (dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (name != "." && name != "..") names->emplace_back(name);
    }
    ::closedir(d);
    return Status::Ok();
  }

  Result<FileInfo> GetFileInfo(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return Status::NotFound("no file " + path);
      return Status::FromErrno("stat", path, errno);
    }
    FileInfo info;
    info.size = static_cast<uint64_t>(st.st_size);
    info.regular = S_ISREG(st.st_mode);
    info.mtime = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
        std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
    return info;
  }

  Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open", dir, errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return Status::FromErrno("fsync", dir, err);
    return Status::Ok();
  }

  Status CreateDirs(const std::string& dir) override {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::IOError("creating " + dir + ": " + ec.message());
    return Status::Ok();
  }

  Result<uint64_t> FreeBytes(const std::string& path) override {
    struct statvfs st;
    if (::statvfs(path.c_str(), &st) != 0) return Status::FromErrno("statvfs", path, errno);
    return static_cast<uint64_t>(st.f_bavail) * static_cast<uint64_t>(st.f_frsize);
  }

  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
    if (fd < 0) return Status::FromErrno("open", path, errno);
    if (Status s = CheckRegularAndBlock(fd, path); !s.ok()) {
      ::close(fd);
      return s;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return Status::Unavailable(path + " is locked by another process");
    }
    return std::unique_ptr<FileLock>(new PosixFileLock(fd));
  }
};

}  // namespace

Env* Env::Default() {
  static Env* const env = new PosixEnv;
  return env;
}

Status AppendFileContents(Env* env, const std::string& path, std::string* out) {
  OKLOG_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, env->NewRandomAccessFile(path));
  OKLOG_ASSIGN_OR_RETURN(uint64_t size, file->Size());
  const size_t offset = out->size();
  out->resize(offset + static_cast<size_t>(size));
  size_t got = 0;
  Status s = file->Read(0, static_cast<size_t>(size), out->data() + offset, &got);
  if (s.ok() && got != size) s = Status::FromErrno("read", path, EIO);
  if (!s.ok()) out->resize(offset);
  return s;
}

}  // namespace oklog
