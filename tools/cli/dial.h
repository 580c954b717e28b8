// Connecting to one of several ingesters, shared by `oklog forward` and `oklog forward -bulk`.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <vector>

#include "common/address.h"

namespace oklog {

// Connects to targets[*current] (TCP, blocking); after each failure moves to the next target
// and sleeps *backoff_ms, doubling it up to 1024 ms. Returns the connected socket, with
// *current naming its target and *backoff_ms reset to 16. Retries for ever, or until deadline
// (then returns -1).
int DialWithBackoff(const std::vector<Address>& targets, size_t* current, int* backoff_ms,
                    std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

}  // namespace oklog
