#include "common/status.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace oklog {

Status Status::FromErrno(std::string_view op, std::string_view path, int err) {
  std::string msg(op);
  if (!path.empty()) {
    msg += " ";
    msg += path;
  }
  msg += ": ";
  msg += std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status(Code::kResourceExhausted, std::move(msg));
  return Status(Code::kIOError, std::move(msg));
}

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: name = "InvalidArgument"; break;
    case Code::kNotFound: name = "NotFound"; break;
    case Code::kCorruption: name = "Corruption"; break;
    case Code::kIOError: name = "IOError"; break;
    case Code::kUnavailable: name = "Unavailable"; break;
    case Code::kTimedOut: name = "TimedOut"; break;
    case Code::kResourceExhausted: name = "ResourceExhausted"; break;
    case Code::kAlreadyExists: name = "AlreadyExists"; break;
    case Code::kCancelled: name = "Cancelled"; break;
  }
  return std::string(name) + ": " + message_;
}

void CheckFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "CHECK failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace oklog
