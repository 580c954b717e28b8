// One spdlog logger per module ("ingest", "store", "query", "gossip", "node", ...), all writing
// logfmt-like lines to stderr. Thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace oklog {

// Returns the module's logger, creating it on first use.
std::shared_ptr<spdlog::logger> Logger(const std::string& module);
// Sets the level of every logger, present and future: "debug", "info", "warn", "error", "off".
void SetLogLevel(const std::string& level);

}  // namespace oklog
