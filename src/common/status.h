// Errors as values. A Status is OK or a code plus a message; Result<T> is a value or a Status.
// No exception crosses a module boundary or a libuv callback: decoders of untrusted bytes
// return Corruption, I/O failures return IOError.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace oklog {

enum class Code {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kCorruption,
  kIOError,
  kUnavailable,
  kTimedOut,
  kResourceExhausted,
  kAlreadyExists,
  kCancelled,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status TimedOut(std::string msg) { return Status(Code::kTimedOut, std::move(msg)); }
  static Status ResourceExhausted(std::string msg) { return Status(Code::kResourceExhausted, std::move(msg)); }
  static Status AlreadyExists(std::string msg) { return Status(Code::kAlreadyExists, std::move(msg)); }
  static Status Cancelled(std::string msg) { return Status(Code::kCancelled, std::move(msg)); }
  // An IOError naming the operation, the path and strerror(err).
  static Status FromErrno(std::string_view op, std::string_view path, int err);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: message" style, for logs and HTTP error bodies.
  std::string ToString() const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Status> v_;
};

#define OKLOG_RETURN_IF_ERROR(expr)        \
  do {                                     \
    ::oklog::Status _st = (expr);          \
    if (!_st.ok()) return _st;             \
  } while (0)

#define OKLOG_CONCAT_INNER(a, b) a##b
#define OKLOG_CONCAT(a, b) OKLOG_CONCAT_INNER(a, b)
#define OKLOG_ASSIGN_OR_RETURN(lhs, expr)                          \
  auto OKLOG_CONCAT(_res_, __LINE__) = (expr);                     \
  if (!OKLOG_CONCAT(_res_, __LINE__).ok())                         \
    return OKLOG_CONCAT(_res_, __LINE__).status();                 \
  lhs = std::move(OKLOG_CONCAT(_res_, __LINE__)).value()

// Release-mode invariant check: for states that would corrupt data if wrong. Never for input.
[[noreturn]] void CheckFailed(const char* expr, const char* file, int line);
#define OKLOG_CHECK(cond) \
  do { if (!(cond)) ::oklog::CheckFailed(#cond, __FILE__, __LINE__); } while (0)

}  // namespace oklog
