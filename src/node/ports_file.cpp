#include "node/ports_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace oklog {

std::string FormatPorts(const BoundPorts& ports) {
  std::string text;
  for (const auto& [name, addr] : ports) text += name + "=" + addr + "\n";
  return text;
}

Status WritePortsFile(const std::string& path, const BoundPorts& ports) {
  const std::string tmp = path + ".tmp";
  const std::string text = FormatPorts(ports);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("open", tmp, errno);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = Status::FromErrno("write", tmp, errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    off += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    Status s = Status::FromErrno("close", tmp, errno);
    ::unlink(tmp.c_str());
    return s;
  }
  // No fsync: the file describes this run only, and a crash ends the run.
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = Status::FromErrno("rename", tmp, errno);
    ::unlink(tmp.c_str());
    return s;
  }
  return Status::Ok();
}

}  // namespace oklog
