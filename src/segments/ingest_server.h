// The ingest listeners: fast (7651), durable (7652) and bulk (7653), speaking OK Log's
// newline protocol. Loop thread only.
//
// Fast: each connection writes its own active segment (no shared lock, no fsync); a segment is
// flushed at flush_size_bytes, after flush_age, and when the connection closes.
// Durable: all durable connections share one active segment and a group commit: records read
// from any durable connection join the next batch, that connection stops reading, and one
// write+fdatasync on the server's disk pool (a WorkPool of its own, not libuv's) makes the whole
// batch durable before any of its connections is read again. One fsync per batch, however many
// connections. Each connection of a durable batch that asked for the back channel
// (segments/ingest_acks.h: the opt-in request and the grammar) is then sent "ack N", N the
// bytes it sent that are now on disk; a batch that fails to reach the disk is never
// acknowledged and closes its connections. Plain connections are never written to.
// Bulk (rpc/bulk_protocol.h): whole segments from `oklog forward -bulk`, each written as a
// flushed ingest segment with ULIDs derived from its id, and acknowledged on that connection
// when a store commits it (after replicating it N times); written on the disk pool. A resend of
// a segment still held here, or committed recently, is not stored twice. Malformed or oversize
// input, and a segment that cannot be stored, get an error frame, are counted, and close that
// connection.
// Refusing producers, losing nothing: while the ingest disk is full (options.disk_guard,
// common/fs/disk_guard.h; writes that fail for lack of space tell it) or the node sheds
// (SetShedding, segments/ingest/shedding.h), the three listeners are closed, so a producer's
// connect is refused and `oklog forward` tries its next ingester. Open newline connections are
// told "leave" when they asked for the back channel (ingest_acks.h; fast ones are half-closed
// too, durable ones stay open for their acks) and half-closed otherwise, as at a draining
// leave: the forwarder finishes its line, half-closes, and moves on, and what it sent is read
// and stored (into the headroom the floor keeps); one that has not
// closed after 10 s is closed. Bulk connections get ["error", "ingest refused: REASON"] and are
// closed; a bulk segment that arrives meanwhile is neither stored nor acknowledged (counted in
// oklog_ingest_refused_writes_total): the forwarder resends what has no ack elsewhere. When
// the reason ends the listeners open again on the same ports (oklog_ingest_refusing: 1 while
// closed).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/address.h"
#include "common/crypto/tls_context.h"
#include "common/fs/disk_guard.h"
#include "common/metrics.h"
#include "common/status.h"
#include "segments/ingest_log.h"
#include "segments/record_encoder.h"

namespace oklog {

class MemoryBudget;

struct IngestServerOptions {
  Address fast, durable, bulk;  // port 0 picks a free port
  TopicMode topic_mode = TopicMode::kStatic;
  std::string topic = "default";
  uint64_t flush_size_bytes = 16 << 20;
  std::chrono::milliseconds flush_age{500};
  size_t record_max_bytes = 1 << 20;
  // Called on the loop thread with each batch of records as soon as they are encoded (before
  // they reach a segment file): live tails subscribe here. The view is valid during the call.
  std::function<void(std::string_view records)> on_records;
  DiskGuard* disk_guard = nullptr;  // the ingest disk's; null: never full. Must outlive the server.
  // Bulk connections' partial frames are charged to it (common/memory_budget.h): a read it
  // refuses gets ["error", "ingest refused: ..."] and the close (the forwarder resends
  // elsewhere or later). Null: no bound. Must outlive the server.
  MemoryBudget* memory_budget = nullptr;
  // Each listener takes at most this many open connections; one more is closed at once
  // (oklog_ingest_connections_closed_total{reason="cap"}). 0: no cap.
  size_t max_connections = 0;
  // A connection that sent nothing this long is let go: a newline connection is half-closed
  // and read until its forwarder finishes and closes (as at a refusal: nothing it sent is
  // lost), a bulk connection with no segment awaiting its ack is closed (the forwarder
  // redials). 0: never.
  std::chrono::milliseconds idle_timeout{0};
  // Set: the three listeners speak TLS with this server context (IngestConn decrypts before the
  // protocol sees a byte; handshake failures are counted under its listener label). Null: plain.
  std::shared_ptr<const crypto::TlsContext> tls;
};

class IngestServer {
 public:
  // Ignores SIGPIPE for the process (acks go to producers that may have gone).
  static Result<std::unique_ptr<IngestServer>> Create(uv_loop_t* loop, IngestLog* log, IngestServerOptions options,
                                                      Registry* metrics);
  ~IngestServer();
  IngestServer(const IngestServer&) = delete;
  IngestServer& operator=(const IngestServer&) = delete;

  uint16_t fast_port() const;
  uint16_t durable_port() const;
  uint16_t bulk_port() const;
  // Stops accepting, reads nothing more, flushes every active segment (after an in-flight
  // durable sync completes) and closes every handle. done runs on the loop when all is closed.
  void Close(std::function<void()> done);
  size_t connections() const;
  // Non-empty: shed, for this reason (see above); empty: take connections again.
  void SetShedding(const std::string& reason);

  class Impl;

 private:
  explicit IngestServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace oklog
