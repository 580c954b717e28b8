#include "segments/ingest/ingest_metrics.h"

namespace oklog {

IngestMetrics::IngestMetrics(Registry* m) {
  auto* family = m->NewGaugeFamily("oklog_connected_clients", "Connected ingest clients.", {"modality"});
  for (Modality mod : {Modality::kFast, Modality::kDurable, Modality::kBulk})
    clients[static_cast<int>(mod)] = family->With({ModalityName(mod)});
  bytes = m->NewCounter("oklog_ingest_writer_bytes_written_total", "Bytes written to ingest segments.");
  records = m->NewCounter("oklog_ingest_writer_records_written_total", "Records written to ingest segments.");
  syncs = m->NewCounter("oklog_ingest_writer_syncs_total", "Group-commit fsyncs of the durable segment.");
  truncated = m->NewCounter("oklog_ingest_records_truncated_total",
                            "Lines longer than -ingest.record-max-size, cut at that size.");
  dropped = m->NewCounter("oklog_ingest_truncated_bytes_total", "Bytes discarded from cut lines.");
  invalid_topic = m->NewCounter("oklog_ingest_invalid_topic_total",
                                "Dynamic-topic lines without a valid topic, kept under the static topic.");
  write_errors = m->NewCounter("oklog_ingest_write_errors_total", "Failed writes or syncs of ingest segments.");
  bulk_segments = m->NewCounterFamily("oklog_ingest_bulk_segments_total",
                                      "Bulk segments received, by result (stored, resent, empty, error).", {"result"});
  bulk_acks = m->NewCounter("oklog_ingest_bulk_acks_total", "Bulk segments acknowledged (replicated N times).");
  bulk_rejected = m->NewCounter("oklog_ingest_bulk_rejected_total",
                                "Bulk connections closed for malformed or oversize input.");
  refusing = m->NewGauge("oklog_ingest_refusing",
                         "1 while the ingest listeners are closed: the ingest disk is full or this ingester sheds "
                         "(/health says why).");
  conns_closed = m->NewCounterFamily(
      "oklog_ingest_connections_closed_total",
      "Ingest connections closed by policy: cap (refused at once, the listener had max_connections open), "
      "idle (nothing read for the idle timeout; newline connections are half-closed and handed over).",
      {"modality", "reason"});
  refused_writes = m->NewCounterFamily(
      "oklog_ingest_refused_writes_total",
      "Bulk segments not written (nor acknowledged) because the ingester refuses producers (disk full, shedding).",
      {"modality"});
  bulk_unacked = m->NewGauge("oklog_ingest_bulk_unacked_segments", "Bulk segments stored here, not yet acknowledged.");
}

}  // namespace oklog
