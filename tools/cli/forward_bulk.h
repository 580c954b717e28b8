// `oklog forward -bulk`: see forward_bulk.cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/crypto/tls_context.h"

namespace oklog {

struct BulkForwardOptions {
  size_t segment_bytes = 4 << 20;             // a segment is cut at this size ...
  std::chrono::milliseconds segment_age{1000};  // ... or this long after its first line
  size_t window = 8;                          // segments awaiting their ack before input pauses
  // A segment sent whole and not acknowledged within this (counted from its send or from the
  // last ack, whichever is later) makes the forwarder move to the next ingester and resend.
  std::chrono::milliseconds ack_timeout{30000};
  std::shared_ptr<const crypto::TlsContext> tls;  // set: every connection speaks TLS (client_conn.h)
};

// Returns the exit status: 0 once every segment of stdin is acknowledged.
int RunBulkForward(std::vector<Address> targets, std::string prefix, BulkForwardOptions options);

}  // namespace oklog
