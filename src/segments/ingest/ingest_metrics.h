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
  // 1 while the listeners are closed (a full ingest disk, or shedding); bulk segments not
  // written (nor acknowledged) meanwhile.
  Gauge* refusing;
  Family<Counter>* refused_writes;
  Family<Counter>* conns_closed;  // {modality, reason="cap"|"idle"}
};

}  // namespace oklog
