// One spdlog logger per module ("ingest", "store", "query", "gossip", "node", ...), all writing
// logfmt-like lines to stderr. Thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace oklog {

// Returns the module's logger, creating it on first use.
std::shared_ptr<spdlog::logger> Logger(const std::string& module);
// Sets the level of every logger, present and future: "debug", "info", "warn", "error", "off".
void SetLogLevel(const std::string& level);

// At most one report per period for something a peer can make happen at will (refused
// handshakes, dropped connections, a used-up budget), so an attacker cannot fill the disk with
// logs. Thread-safe.
class LogLimiter {
 public:
  explicit LogLimiter(std::chrono::milliseconds every = std::chrono::seconds(10)) : every_(every) {}
  // True when this event should be logged; then *suppressed (if not null) is how many were not
  // since the last report.
  bool Allow(uint64_t* suppressed = nullptr);

 private:
  const std::chrono::milliseconds every_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_{};
  bool logged_ = false;
  uint64_t unlogged_ = 0;
};

}  // namespace oklog
