// Checking libuv's init results, every one of them.
//
// Two kinds of init. Those that create a descriptor can fail when the process is out of them
// (EMFILE) or out of memory: uv_async_init (an eventfd), uv_signal_init (the signal pipe),
// uv_udp_init, uv_poll_init. Their result becomes a Status with UvStatus and travels up like any
// other error. The rest create nothing in the kernel and libuv returns 0 for them on a live loop
// (uv_timer_init, uv_idle_init, uv_prepare_init, uv_check_init, uv_tcp_init, which opens its
// socket only at bind or connect): OKLOG_UV_CHECK checks them anyway, and a non-zero result
// means the loop itself is broken, so it aborts naming the call and its place rather than let a
// half-made handle be used.
#pragma once

#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/status.h"

namespace oklog {

// Ok for 0; otherwise IOError "what: <libuv's message>".
inline Status UvStatus(int rc, const char* what) {
  if (rc == 0) return Status::Ok();
  return Status::IOError(std::string(what) + ": " + uv_strerror(rc));
}

[[noreturn]] inline void UvCheckFailed(const char* call, int rc, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: %s failed: %s\n", file, line, call, uv_strerror(rc));
  std::abort();
}

}  // namespace oklog

#define OKLOG_UV_CHECK(call)                                                       \
  do {                                                                             \
    const int oklog_uv_rc_ = (call);                                               \
    if (oklog_uv_rc_ != 0) ::oklog::UvCheckFailed(#call, oklog_uv_rc_, __FILE__, __LINE__); \
  } while (0)
