#include "segments/segment_rpc.h"

#include <functional>

#include "common/log.h"
#include "common/ulid.h"
#include "common/uv/check.h"
#include "segments/holdings.h"
#include "segments/record_merge.h"
#include "segments/segment_messages.h"

namespace oklog {
namespace {

// The segment RPC's blocking file work (claims, reads, commits, expiry, replica installs) runs
// on the node's disk pool, never on the loop and never in libuv's shared uv_queue_work pool.
// after(Ok) once work ran; after(Unavailable), work never run, when the pool closed first.
void RunDiskWork(WorkPool* disk, std::function<void()> work, std::function<void(Status)> after) {
  if (!disk->Submit(std::move(work), [after](Status s) {
        after(s.ok() ? s : Status::Unavailable("segment rpc: disk pool closed"));
      }))
    after(Status::Unavailable("segment rpc: disk pool closed"));
}

// A failure of the disk rather than of the replica's bytes.
bool IsWriteError(const Status& s) {
  return s.code() == Code::kIOError || s.code() == Code::kResourceExhausted;
}

Family<Counter>* BadRequests(Registry* metrics) {
  return metrics->NewCounterFamily("oklog_segment_rpc_bad_requests_total",
                                   "segment.* requests refused because their body did not decode, by method.",
                                   {"method"});
}

// A request whose body does not decode: InvalidArgument to the caller (its request is bad),
// counted and logged here.
void Refuse(const std::shared_ptr<rpc::ServerCall>& c, Family<Counter>* bad, const Status& why) {
  bad->With({c->method()})->Inc();
  Logger("store")->warn("msg=\"bad request\" method={} peer={} reason=\"{}\"", c->method(), c->peer(), why.ToString());
  c->Respond(Status::InvalidArgument(why.message()));
}

}  // namespace

// ---- ingest side ----

std::unique_ptr<IngestRpc> IngestRpc::Create(uv_loop_t* loop, IngestLog* ingest, rpc::RpcServer* server,
                                             WorkPool* disk, std::chrono::milliseconds pending_timeout,
                                             Registry* metrics) {
  std::unique_ptr<IngestRpc> r(new IngestRpc);
  r->disk_ = disk;
  r->ingest_ = ingest;
  Counter* claimed = metrics->NewCounter("oklog_ingest_segments_claimed_total", "Ingest segments claimed by store nodes.");
  Counter* read_bytes = metrics->NewCounter("oklog_ingest_segment_read_bytes_total", "Ingest segment bytes read by store nodes.");
  Family<Counter>* bad = BadRequests(metrics);
  server->Handle(kSegmentNext, [disk, ingest, claimed, bad](std::shared_ptr<rpc::ServerCall> c) {
    Result<uint64_t> max = DecodeSegmentNext(c->body());
    if (!max.ok()) return Refuse(c, bad, max.status());
    auto out = std::make_shared<std::vector<ClaimedSegment>>();
    RunDiskWork(
        disk,
        [ingest, max = *max, out, claimed] {
          for (const PendingSegment& s : ingest->Claim(max)) {
            out->push_back({s.id, s.bytes});
            claimed->Inc();
          }
        },
        [c, out](Status ran) {
          if (!ran.ok()) return c->Respond(ran);
          c->Respond(Status::Ok(), EncodeClaimedSegments(*out));
        });
  });
  server->Handle(kSegmentRead, [disk, ingest, read_bytes, bad](std::shared_ptr<rpc::ServerCall> c) {
    Result<std::string> id = DecodeSegmentId(c->body());
    if (!id.ok()) return Refuse(c, bad, id.status());
    auto out = std::make_shared<Result<std::string>>(std::string());
    std::string path = ingest->dir() + "/" + *id + ".pending";
    RunDiskWork(
        disk,
        [ingest, path, out] {
          std::string buf;
          Status s = AppendFileContents(ingest->env(), path, &buf);
          if (s.ok()) *out = std::move(buf);
          else *out = Status::NotFound("segment.read: " + s.ToString());
        },
        [c, out, read_bytes](Status ran) {
          if (!ran.ok()) return c->Respond(ran);
          if (!out->ok()) return c->Respond(out->status());
          read_bytes->Inc(out->value().size());
          c->Respond(Status::Ok(), std::move(out->value()));
        });
  });
  auto finish = [disk, ingest, bad](bool commit) {
    return [disk, ingest, commit, bad](std::shared_ptr<rpc::ServerCall> c) {
      Result<std::vector<std::string>> ids = DecodeSegmentIds(c->body());
      if (!ids.ok()) return Refuse(c, bad, ids.status());
      auto st = std::make_shared<Status>();
      RunDiskWork(
          disk,
          [ingest, commit, ids = std::move(ids).value(), st] {
            for (const std::string& id : ids) {
              Status s = commit ? ingest->Commit(id) : ingest->Fail(id);
              if (!s.ok() && st->ok()) *st = s;
            }
          },
          [c, st](Status ran) { c->Respond(ran.ok() ? *st : ran); });
    };
  };
  server->Handle(kSegmentCommit, finish(true));
  server->Handle(kSegmentFailed, finish(false));

  r->timer_ = new uv_timer_t;
  OKLOG_UV_CHECK(uv_timer_init(loop, r->timer_));
  r->timer_->data = r.get();
  const uint64_t every = static_cast<uint64_t>(std::max<int64_t>(50, pending_timeout.count() / 4));
  uv_timer_start(r->timer_, OnTimer, every, every);
  return r;
}

void IngestRpc::OnTimer(uv_timer_t* t) noexcept {
  auto* self = static_cast<IngestRpc*>(t->data);
  if (!self || *self->expiring_) return;
  *self->expiring_ = true;
  IngestLog* ingest = self->ingest_;
  auto n = std::make_shared<int>(0);
  // The after-work callback may run after Close(): it touches only the shared flag.
  RunDiskWork(
      self->disk_, [ingest, n] { *n = ingest->ExpirePending(std::chrono::steady_clock::now()); },
      [flag = self->expiring_, n](Status) {
        if (*n > 0) Logger("ingest")->warn("{} claimed segment(s) timed out; back to flushed", *n);
        *flag = false;
      });
}

IngestRpc::~IngestRpc() { Close(); }

void IngestRpc::Close() {
  if (!timer_) return;
  timer_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  timer_ = nullptr;
}

// ---- store side ----

void ServeReplicas(StoreLog* store, rpc::RpcServer* server, WorkPool* disk, Registry* metrics, DiskGuard* guard) {
  Counter* received = metrics->NewCounter("oklog_store_replicated_records_total", "Records received as replicas and stored.");
  Counter* files = metrics->NewCounter("oklog_store_replicated_files_total",
                                       "Segment files received as replicas (segment.replicate_file) and stored.");
  Counter* rejected = metrics->NewCounter("oklog_store_replica_files_rejected_total",
                                          "Segment files received as replicas that failed their check, not stored.");
  Counter* write_errors = metrics->NewCounter("oklog_store_replica_write_errors_total",
                                              "Replicas (files or records) not stored because of an I/O error.");
  Counter* refused = metrics->NewCounter("oklog_store_replicas_refused_total",
                                         "Replicas refused because the store disk is full (-store.min-free-bytes).");
  // Refuses the call while the disk is full; true when it did.
  auto refuse = [guard, refused](const std::shared_ptr<rpc::ServerCall>& c) {
    if (guard == nullptr || !guard->full()) return false;
    refused->Inc();
    c->Respond(Status::ResourceExhausted("replica refused: " + guard->reason()));
    return true;
  };
  server->Handle(kSegmentReplicateFile, [disk, store, received, files, rejected, write_errors, refuse,
                                         guard](std::shared_ptr<rpc::ServerCall> c) {
    if (refuse(c)) return;
    auto out = std::make_shared<Result<uint64_t>>(uint64_t{0});
    RunDiskWork(
        disk, [c, store, out] { *out = store->InstallReplicaFile(c->body()); },
        [c, out, received, files, rejected, write_errors, guard](Status ran) {
          if (!ran.ok()) *out = ran;
          if (!out->ok()) {
            if (guard != nullptr) guard->NoteWriteError(out->status());
            if (out->status().code() == Code::kCorruption) rejected->Inc();
            if (IsWriteError(out->status())) write_errors->Inc();
            Logger("store")->error("replica file ({} bytes) from {} not stored: {}", c->body().size(), c->peer_name(),
                                   out->status().ToString());
            return c->Respond(out->status());
          }
          files->Inc();
          received->Inc(out->value());
          c->Respond(Status::Ok(), EncodeStoredRecords(out->value()));
        });
  });
  server->Handle(kSegmentCopy, [disk, store, received, rejected, write_errors, refuse,
                                guard](std::shared_ptr<rpc::ServerCall> c) {
    if (refuse(c)) return;
    auto copy = std::make_shared<Result<SegmentCopy>>(DecodeSegmentCopy(c->body()));
    if (!copy->ok()) {
      rejected->Inc();
      return c->Respond(copy->status());
    }
    auto out = std::make_shared<Result<uint64_t>>(uint64_t{0});
    RunDiskWork(
        disk, [c, store, out, copy] { *out = store->InstallCopy((*copy)->file, (*copy)->claims); },
        [c, out, received, rejected, write_errors, guard](Status ran) {
          if (!ran.ok()) *out = ran;
          if (!out->ok()) {
            if (guard != nullptr) guard->NoteWriteError(out->status());
            if (out->status().code() == Code::kCorruption || out->status().code() == Code::kInvalidArgument)
              rejected->Inc();
            if (IsWriteError(out->status())) write_errors->Inc();
            Logger("store")->error("copy ({} bytes) from {} not stored: {}", c->body().size(), c->peer_name(),
                                   out->status().ToString());
            return c->Respond(out->status());
          }
          received->Inc(out->value());
          c->Respond(Status::Ok(), EncodeStoredRecords(out->value()));
        });
  });
  server->Handle(kSegmentReplicate, [disk, store, received, write_errors, refuse,
                                     guard](std::shared_ptr<rpc::ServerCall> c) {
    if (refuse(c)) return;
    auto out = std::make_shared<Result<uint64_t>>(uint64_t{0});
    RunDiskWork(
        disk,
        [c, store, out] {
          ParseStats ps;
          std::vector<std::string_view> recs = ParseRecords(c->body(), &ps);
          if (ps.invalid) {
            *out = Status::InvalidArgument("segment.replicate: " + std::to_string(ps.invalid) + " invalid record(s)");
            return;
          }
          if (SortRecords(&recs)) {
            *out = Status::InvalidArgument("segment.replicate: records not sorted");
            return;
          }
          *out = store->WriteReplica(recs);
        },
        [c, out, received, write_errors, guard](Status ran) {
          if (!ran.ok()) *out = ran;
          if (!out->ok()) {
            if (guard != nullptr) guard->NoteWriteError(out->status());
            if (IsWriteError(out->status())) write_errors->Inc();
            Logger("store")->error("replica from {} not stored: {}", c->peer_name(), out->status().ToString());
            return c->Respond(out->status());
          }
          received->Inc(out->value());
          c->Respond(Status::Ok(), EncodeStoredRecords(out->value()));
        });
  });
}

}  // namespace oklog
