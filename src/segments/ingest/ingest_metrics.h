// The ingest listeners' metrics, registered once and shared by the server, its connections and
// the group committer. Counters may be updated from any thread.
#pragma once

#include "common/metrics.h"
#include "segments/ingest/ingest_conn.h"

namespace oklog {

struct IngestMetrics {
  explicit IngestMetrics(Registry* m);

  Gauge* clients[kModalities];
  Counter* bytes;
  Counter* records;
  Counter* syncs;
  Counter* truncated;
  Counter* dropped;
  Counter* invalid_topic;
  Counter* write_errors;
  Family<Counter>* bulk_segments;
  Counter* bulk_acks;
  Counter* bulk_rejected;
  Gauge* bulk_unacked;
  // While the ingest disk is full (common/fs/disk_guard.h): connections refused, by port, and
  // durable batches and bulk segments not written, by port.
  Family<Counter>* refused_connections;
  Family<Counter>* refused_writes;
};

}  // namespace oklog
