// Driving a libuv loop from a test's own thread.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>

namespace oklog {

// Runs the loop until pred() holds or timeout_ms of real time pass; a ticker (tick_ms) keeps it
// waking to check. Returns pred()'s last value.
inline bool RunLoopUntil(uv_loop_t* loop, const std::function<bool()>& pred, int timeout_ms, int tick_ms) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, [](uv_timer_t*) {}, static_cast<uint64_t>(tick_ms), static_cast<uint64_t>(tick_ms));
  auto start = std::chrono::steady_clock::now();
  bool ok = pred();
  while (!ok && std::chrono::steady_clock::now() - start < std::chrono::milliseconds(timeout_ms)) {
    uv_run(loop, UV_RUN_ONCE);
    ok = pred();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

}  // namespace oklog
