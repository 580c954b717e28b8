#include "query/query_api.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <set>
#include <thread>

#include "common/duration.h"
#include "common/log.h"
#include "common/ulid.h"
#include "query/query_params.h"
#include "query/record_sink.h"

namespace oklog {

// One running scan: a user's GET (response) or a peer's query.run (call). Shared by the loop
// (output, bookkeeping) and the driver thread (flow control fields under mu).
struct QueryService::Run {
  uint64_t id = 0;
  std::shared_ptr<HttpResponse> response;  // loop thread only; a user's GET
  std::shared_ptr<rpc::ServerCall> call;   // loop thread only; a peer's query.run
  std::thread driver;                      // a GET's; joined on the loop once the end event arrived
  std::chrono::steady_clock::time_point start;
  bool ending = false;  // loop: we are finishing the response ourselves
  bool partial = false;  // a user's GET went out as 206

  // Loop thread: the output's state, whichever it is.
  bool closed() const { return response ? response->closed() : call->over(); }
  void Write(std::string chunk) {
    if (response) {
      response->Write(std::move(chunk));
    } else {
      call->Send(std::move(chunk));
    }
  }
  // Bytes the output holds beyond what the client took; a full credit window counts as
  // high_water (the driver then waits for OnWritable).
  size_t Buffered(size_t high_water) const {
    if (response) return response->closed() ? 0 : response->buffered_bytes();
    return call->over() || call->writable() ? 0 : high_water;
  }
  void Finish(const Status& status) {
    if (response) {
      response->Finish();
    } else {
      call->End(status);
    }
  }

  std::atomic<bool> cancel{false};
  std::mutex mu;
  std::condition_variable cv;
  size_t in_transit = 0;  // bytes posted by the driver, not yet handed to the response
  size_t buffered = 0;    // the response's buffered bytes as last seen on the loop
};

struct QueryService::Event {
  std::shared_ptr<Run> run;
  std::string chunk;
  bool end = false;
  Status status;
  ScanStats stats;
};

namespace {

bool ValidPath(const std::string& path) { return path == "/store/query" || path == "/store/_query"; }

// The headers naming what a query over gaps (bad blocks) could not answer: block and record
// counts, and the ranges (RFC3339 FROM/TO, clipped to the query's, at most 16).
void AddSkippedHeaders(const std::vector<Gap>& gaps, const Ulid& from, const Ulid& to, HttpResponse::Headers* h) {
  uint64_t records = 0;
  std::string ranges;
  for (size_t i = 0; i < gaps.size(); ++i) {
    records += gaps[i].records;
    if (i < 16)
      ranges += (i ? "," : "") + FormatRfc3339(std::max(gaps[i].low, from).unix_ms()) + "/" +
                FormatRfc3339(std::min(gaps[i].high, to).unix_ms());
  }
  h->push_back({"X-Oklog-Skipped-Blocks", std::to_string(gaps.size())});
  h->push_back({"X-Oklog-Skipped-Records", std::to_string(records)});
  h->push_back({"X-Oklog-Skipped-Ranges", ranges});
}

}  // namespace

// Reused driver threads for peers' query.run: started on demand up to `threads`, a bounded
// queue in front. A job blocks its thread for the whole scan (backpressure included).
class QueryService::PeerDrivers {
 public:
  PeerDrivers(size_t threads, size_t max_queued) : max_threads_(std::max<size_t>(1, threads)), max_queued_(max_queued) {}
  ~PeerDrivers() { Stop(); }
  // False when the queue is full or the pool is stopping.
  bool Submit(std::function<void()> job) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(job));
    if (idle_ == 0 && threads_.size() < max_threads_) threads_.emplace_back([this] { Loop(); });
    cv_.notify_one();
    return true;
  }
  // Jobs not started are dropped (their owner fails them); running ones finish. Joins.
  std::vector<std::function<void()>> Stop() {
    std::vector<std::function<void()>> dropped;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      for (auto& j : queue_) dropped.push_back(std::move(j));
      queue_.clear();
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
    return dropped;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      --idle_;
      if (queue_.empty()) return;  // stopping
      std::function<void()> job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }
  const size_t max_threads_, max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
};

QueryService::QueryService(StoreLog* store, Options options, Registry* metrics)
    : store_(store),
      options_(std::move(options)),
      queries_(metrics->NewCounterFamily("oklog_query_queries_total",
                                         "Store queries by result: ok, stats (HEAD), bad_request, cancelled, "
                                         "rejected, error.",
                                         {"result"})),
      peer_queries_(metrics->NewCounterFamily("oklog_query_peer_queries_total",
                                              "query.run calls served for fanning-out nodes, by result: ok, stats, "
                                              "bad_request, cancelled, rejected, error.",
                                              {"result"})),
      running_gauge_(metrics->NewGauge("oklog_query_running", "Queries whose scan is running (users' and peers').")),
      duration_(metrics->NewHistogram("oklog_query_duration_seconds", "Time from request to last byte queued.",
                                      DefaultLatencyBuckets())) {
  if (!options_.now_ms) options_.now_ms = [] { return NowUnixMs(); };
  QueryExecutor::Options eo;
  eo.scan_threads = options_.scan_threads;
  executor_ = std::make_unique<QueryExecutor>(eo, metrics);
  peer_drivers_ = std::make_unique<PeerDrivers>(options_.peer_query_threads, options_.max_queued_peer_queries);
  executor_->SetCorruptionHandler([store](const SegmentReader& segment, size_t block, const Status& why) {
    // Only bad bytes mark a block; a failed read (EIO) skips it for this query alone.
    if (why.code() == Code::kCorruption) store->MarkBlockBad(segment, block, why);
  });
}

Result<std::unique_ptr<QueryService>> QueryService::Create(uv_loop_t* loop, StoreLog* store, Options options,
                                                           Registry* metrics) {
  std::unique_ptr<QueryService> s(new QueryService(store, std::move(options), metrics));
  OKLOG_ASSIGN_OR_RETURN(s->poster_, LoopPoster::Create(loop));
  return s;
}

QueryService::~QueryService() {
  // Close() and a loop run must have happened; be safe if the loop never ran the callback.
  for (auto& [id, run] : runs_) {
    run->cancel = true;
    run->cv.notify_all();
  }
  peer_drivers_->Stop();
  for (auto& [id, run] : runs_) {
    run->cancel = true;
    run->cv.notify_all();
    if (run->driver.joinable()) run->driver.join();
  }
}

void QueryService::Register(HttpServer* server) {
  auto query = [this](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) { HandleQuery(req, resp); };
  server->Handle("/store/query", query);
  server->Handle("/store/_query", query);
  server->Handle("/store/", [this](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
    HandleRoot(req, resp);
  });
}

void QueryService::Serve(rpc::RpcServer* server) {
  server->Handle(kQueryRun, [this](std::shared_ptr<rpc::ServerCall> call) { HandleRun(std::move(call)); });
}

void QueryService::Close() {
  if (closing_) return;
  closing_ = true;
  for (auto& [id, run] : runs_) {
    run->cancel = true;
    {
      std::lock_guard<std::mutex> lock(run->mu);
    }
    run->cv.notify_all();
  }
  peer_drivers_->Stop();  // queued query.run jobs are dropped: their runs end just below
  for (auto& [id, run] : runs_) {
    if (run->driver.joinable()) run->driver.join();
    if (!run->closed()) {
      run->ending = true;
      run->Finish(Status::Unavailable("the node is shutting down"));
    }
  }
  runs_.clear();
  running_gauge_->Set(0);
  poster_->Close();  // events still queued are dropped: their runs are gone
}

void QueryService::HandleRoot(const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
  if (req.path != "/store/" && req.path != "/store") return resp->Send(404, "404 page not found\n");
  std::string location = "/store/query";
  if (!req.raw_query.empty()) location += "?" + req.raw_query;
  resp->Start(307, {{"Location", location}, {"Content-Length", "0"}});
  resp->Finish();
}

void QueryService::HandleQuery(const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
  if (!ValidPath(req.path)) return resp->Send(404, "404 page not found\n");
  if (req.method != "GET" && req.method != "HEAD") {
    resp->Start(405, {{"Allow", "GET, HEAD"}, {"Content-Type", "text/plain; charset=utf-8"}});
    resp->Write("method not allowed\n");
    resp->Finish();
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto bad = [&](const Status& s) {
    queries_->With({"bad_request"})->Inc();
    resp->Send(400, s.message() + "\n");
  };
  Result<QueryParams> params = ParseQueryParams(req.params, options_.now_ms());
  if (!params.ok()) return bad(params.status());
  const QueryParams& p = params.value();
  MatchSpec spec{p.q, p.mode, p.topics};
  Result<std::unique_ptr<Matcher>> matcher = Matcher::Create(spec);
  if (!matcher.ok()) return bad(matcher.status());

  Plan plan = MakePlan(p.from, p.to, p.order(), p.limit);
  ScanRequest& request = plan.request;
  const uint64_t raw_bytes = plan.raw_bytes;

  const bool head = req.method == "HEAD" || resp->is_head();
  // Peers' query.run have their own drivers and bound: only users' GETs count here.
  const auto users = static_cast<size_t>(
      std::count_if(runs_.begin(), runs_.end(), [](const auto& kv) { return kv.second->response != nullptr; }));
  if (!head && users >= options_.max_running_queries) {
    queries_->With({"rejected"})->Inc();
    return resp->Send(503, "too many queries running; try again later\n");
  }
  HttpResponse::Headers headers = {
      {"Content-Type", p.format == OutputFormat::kJson ? "application/x-ndjson" : "text/plain; charset=utf-8"},
      {"X-Oklog-From", FormatRfc3339(p.from.unix_ms())},
      {"X-Oklog-To", FormatRfc3339(p.to.unix_ms())},
      {"X-Oklog-Q", p.q},
      {"X-Oklog-Regex", p.mode == MatchMode::kRegex ? "true" : "false"},
      {"X-Oklog-Nodes-Queried", "1"},
      {"X-Oklog-Segments-Queried", std::to_string(request.segments.size())},
      {"X-Oklog-Max-Data-Set-Size", std::to_string(raw_bytes)},
      {"X-Oklog-Error-Count", plan.gaps.empty() ? "0" : "1"},
      {"X-Oklog-Duration", FormatDuration(std::chrono::steady_clock::now() - t0)},
  };
  // Records of the range lost to bad blocks: the answer cannot be whole (206, as the fan-out's
  // rule for a store that did not answer), and says what it lacks.
  const int status = plan.gaps.empty() ? 200 : 206;
  if (!plan.gaps.empty()) AddSkippedHeaders(plan.gaps, p.from, p.to, &headers);
  if (head) {
    queries_->With({"stats"})->Inc();
    resp->Start(status, headers);
    resp->Finish();
    return;
  }
  resp->Start(status, headers);
  if (request.segments.empty()) {
    queries_->With({"ok"})->Inc();
    resp->Finish();
    return;
  }

  std::shared_ptr<Run> run = AddRun(t0);
  run->response = resp;
  run->partial = status == 206;
  const uint64_t id = run->id;
  resp->OnClose([this, id] { OnClientGone(id); });
  resp->OnDrain([this, id] {
    auto it = runs_.find(id);
    if (it != runs_.end()) Wake(*it->second);
  });
  std::shared_ptr<const Matcher> shared_matcher = std::move(matcher).value();
  run->driver = std::thread(&QueryService::Drive, this, run, std::move(request), shared_matcher, p.format);
}

QueryService::Plan QueryService::MakePlan(const Ulid& from, const Ulid& to, ScanOrder order,
                                          std::optional<uint64_t> limit) {
  Plan plan;
  plan.request.from = from;
  plan.request.to = to;
  plan.request.order = order;
  plan.request.limit = limit;
  if (from <= to) {
    plan.request.segments = store_->Select(from, to);
    plan.gaps = store_->UnhealedGaps(from, to);
  }
  for (const auto& s : plan.request.segments) plan.raw_bytes += s->raw_bytes();
  return plan;
}

std::shared_ptr<QueryService::Run> QueryService::AddRun(std::chrono::steady_clock::time_point start) {
  auto run = std::make_shared<Run>();
  run->id = next_id_++;
  run->start = start;
  runs_[run->id] = run;
  running_gauge_->Set(static_cast<double>(runs_.size()));
  return run;
}

void QueryService::Wake(Run& run) {
  {
    std::lock_guard<std::mutex> lock(run.mu);
    run.buffered = run.Buffered(options_.high_water_bytes);
  }
  run.cv.notify_all();
}

// query.run: the same plan and scan as a GET, answered to a peer. The stats part goes out
// before any scanning (planning figures, as the HTTP headers), then raw records in scan order.
void QueryService::HandleRun(std::shared_ptr<rpc::ServerCall> call) {
  const auto t0 = std::chrono::steady_clock::now();
  Result<QueryRunRequest> req = DecodeQueryRunRequest(call->body());
  if (!req.ok()) {
    peer_queries_->With({"bad_request"})->Inc();
    Logger("query")->warn("msg=\"bad query.run request\" peer={} reason=\"{}\"", call->peer(), req.status().ToString());
    // The caller's request is bad (as for segment.* and stream.open): InvalidArgument, the reason kept.
    return call->Respond(Status::InvalidArgument(req.status().message()));
  }
  Result<std::unique_ptr<Matcher>> matcher = Matcher::Create(MatchSpec{req->q, req->mode, req->topics});
  if (!matcher.ok()) {
    peer_queries_->With({"bad_request"})->Inc();
    return call->Respond(Status::InvalidArgument(matcher.status().message()));
  }
  if (closing_) return call->Respond(Status::Unavailable("the node is shutting down"));
  Plan plan = MakePlan(req->from, req->to, req->order(), req->limit);
  QueryRunStats stats;
  stats.segments = plan.request.segments.size();
  stats.max_data_set_size = plan.raw_bytes;
  std::set<std::string> asked;
  if (holdings_ && req->asked) {
    asked.insert(req->asked->begin(), req->asked->end());
    stats.missing = holdings_->Missing(req->from, req->to, asked, kMaxMissingReported, &stats.missing_total);
  }
  // This store's gaps in the range, except those whose every batch another asked store holds:
  // that store answers with those records, so the fanned-out answer lacks nothing.
  for (const Gap& g : plan.gaps) {
    const bool covered = holdings_ && !asked.empty() && !g.batches.empty() &&
                         std::all_of(g.batches.begin(), g.batches.end(),
                                     [&](const BatchId& b) { return holdings_->HeldByAny(b, asked); });
    if (covered) continue;
    ++stats.skipped_blocks;
    stats.skipped_records += g.records;
  }
  call->Send(EncodeQueryRunStats(stats));
  if (req->kind == QueryRunKind::kStatsOnly || plan.request.segments.empty()) {
    peer_queries_->With({req->kind == QueryRunKind::kStatsOnly ? "stats" : "ok"})->Inc();
    return call->End(Status::Ok());
  }
  std::shared_ptr<Run> run = AddRun(t0);
  run->call = call;
  const uint64_t id = run->id;
  call->OnCancel([this, id] { OnClientGone(id); });
  call->OnWritable([this, id] {
    auto it = runs_.find(id);
    if (it != runs_.end()) Wake(*it->second);
  });
  std::shared_ptr<const Matcher> shared_matcher = std::move(matcher).value();
  auto job = [this, run, request = std::move(plan.request), shared_matcher]() mutable {
    Drive(run, std::move(request), shared_matcher, OutputFormat::kText);
  };
  if (!peer_drivers_->Submit(std::move(job))) {
    peer_queries_->With({"rejected"})->Inc();
    runs_.erase(id);
    running_gauge_->Set(static_cast<double>(runs_.size()));
    call->End(Status::Unavailable("too many peer queries running; try again later"));
  }
}

void QueryService::OnClientGone(uint64_t id) {
  auto it = runs_.find(id);
  if (it == runs_.end() || it->second->ending) return;
  Run& r = *it->second;
  r.cancel = true;
  {
    std::lock_guard<std::mutex> lock(r.mu);
  }
  r.cv.notify_all();
}

void QueryService::Drive(std::shared_ptr<Run> run, ScanRequest request, std::shared_ptr<const Matcher> matcher,
                         OutputFormat format) {
  ChunkingSink sink(format, options_.chunk_bytes, options_.max_chunk_delay,
                    [this, &run](std::string chunk) { return PushChunk(run, std::move(chunk)); });
  Event end;
  end.run = run;
  end.end = true;
  end.status = executor_->Run(request, *matcher, &sink, run->cancel, &end.stats);
  if (end.status.ok() && !sink.Flush()) end.status = Status::Cancelled("the client went away");
  Post(std::move(end));
}

bool QueryService::PushChunk(const std::shared_ptr<Run>& run, std::string chunk) {
  {
    std::unique_lock<std::mutex> lock(run->mu);
    run->cv.wait(lock,
                 [&] { return run->cancel.load() || run->in_transit + run->buffered < options_.high_water_bytes; });
    if (run->cancel.load()) return false;
    run->in_transit += chunk.size();
  }
  Event e;
  e.run = run;
  e.chunk = std::move(chunk);
  Post(std::move(e));
  return true;
}

void QueryService::Post(Event event) {
  // The poster outlives every driver: Close() joins them before closing it.
  poster_->Post([this, e = std::move(event)](bool run) mutable {
    if (run) HandleEvent(e);
  });
}

// One chunk or end from a driver, in the order the driver posted them.
void QueryService::HandleEvent(Event& e) {
  Run& run = *e.run;
  if (runs_.find(run.id) == runs_.end()) return;  // already torn down by Close()
  if (!e.end) {
    size_t n = e.chunk.size();
    if (!run.closed()) run.Write(std::move(e.chunk));
    {
      std::lock_guard<std::mutex> lock(run.mu);
      run.in_transit -= n;
      run.buffered = run.Buffered(options_.high_water_bytes);
    }
    run.cv.notify_all();
    return;
  }
  // The driver posted its last event and is returning: the join is immediate. (A query.run's
  // driver is a pool thread, which simply takes the next job.)
  if (run.driver.joinable()) run.driver.join();
  const bool client_gone = run.closed();
  const char* result = e.status.ok() ? "ok" : (e.status.code() == Code::kCancelled ? "cancelled" : "error");
  if (e.status.ok() && client_gone) result = "cancelled";
  if (e.status.ok() && !client_gone && e.stats.corrupt_blocks > 0) result = "error";  // cut off below
  (run.call ? peer_queries_ : queries_)->With({result})->Inc();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - run.start).count();
  duration_->Observe(secs);
  Logger("query")->debug(
      "msg=\"query done\" result={} seconds={:.3f} segments={} blocks_read={} blocks_skipped={} bytes_scanned={} "
      "records={} duplicates={}",
      result, secs, e.stats.segments, e.stats.blocks_read, e.stats.blocks_skipped, e.stats.bytes_scanned,
      e.stats.records, e.stats.duplicates);
  if (!client_gone) {
    run.ending = true;
    if (e.status.ok() && e.stats.corrupt_blocks > 0) {
      // Blocks found bad during this scan (marked now; later queries plan around them): the
      // status already went out, so the answer must not end as if whole. A peer's call ends with
      // the error (the fan-out counts it: a 206, or an answer cut off); a user's 200 is cut off.
      Status cut = Status::Corruption(std::to_string(e.stats.corrupt_blocks) +
                                      " bad block(s) found during the scan were skipped");
      if (run.response && !run.partial) {
        run.response->Abort(cut.message());
      } else if (run.call) {
        run.Finish(cut);
      } else {
        run.Finish(e.status);
      }
    } else {
      run.Finish(e.status);
    }
  }
  runs_.erase(run.id);
  running_gauge_->Set(static_cast<double>(runs_.size()));
}

}  // namespace oklog
