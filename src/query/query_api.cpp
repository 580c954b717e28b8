#include "query/query_api.h"

#include <condition_variable>
#include <thread>

#include "common/duration.h"
#include "common/log.h"
#include "common/ulid.h"
#include "query/query_params.h"
#include "query/record_sink.h"

namespace oklog {

// One running GET. Shared by the loop (response, bookkeeping) and the driver thread (flow
// control fields under mu).
struct QueryService::Run {
  uint64_t id = 0;
  std::shared_ptr<HttpResponse> response;  // loop thread only
  std::thread driver;                      // joined on the loop once the end event arrived
  std::chrono::steady_clock::time_point start;
  bool ending = false;  // loop: we are finishing the response ourselves

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

}  // namespace

QueryService::QueryService(uv_loop_t* loop, StoreLog* store, Options options, Registry* metrics)
    : loop_(loop),
      store_(store),
      options_(std::move(options)),
      queries_(metrics->NewCounterFamily("oklog_query_queries_total",
                                         "Store queries by result: ok, stats (HEAD), bad_request, cancelled, "
                                         "rejected, error.",
                                         {"result"})),
      running_gauge_(metrics->NewGauge("oklog_query_running", "Queries whose scan is running.")),
      duration_(metrics->NewHistogram("oklog_query_duration_seconds", "Time from request to last byte queued.",
                                      DefaultLatencyBuckets())) {
  if (!options_.now_ms) options_.now_ms = [] { return NowUnixMs(); };
  QueryExecutor::Options eo;
  eo.scan_threads = options_.scan_threads;
  executor_ = std::make_unique<QueryExecutor>(eo, metrics);
  executor_->SetCorruptionHandler([store](const SegmentReader& segment, size_t, const Status& why) {
    store->Quarantine(segment.path(), why);
  });
}

Result<std::unique_ptr<QueryService>> QueryService::Create(uv_loop_t* loop, StoreLog* store, Options options,
                                                           Registry* metrics) {
  std::unique_ptr<QueryService> s(new QueryService(loop, store, std::move(options), metrics));
  auto* async = new uv_async_t;
  int rc = uv_async_init(loop, async, &QueryService::OnAsync);
  if (rc != 0) {
    delete async;
    return Status::IOError(std::string("uv_async_init: ") + uv_strerror(rc));
  }
  async->data = s.get();
  s->async_ = async;
  return s;
}

QueryService::~QueryService() {
  // Close() and a loop run must have happened; be safe if the loop never ran the callback.
  for (auto& [id, run] : runs_) {
    run->cancel = true;
    run->cv.notify_all();
    if (run->driver.joinable()) run->driver.join();
  }
  if (async_ != nullptr) async_->data = nullptr;  // leaked rather than freed under the loop
}

void QueryService::Register(HttpServer* server) {
  auto query = [this](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) { HandleQuery(req, resp); };
  server->Handle("/store/query", query);
  server->Handle("/store/_query", query);
  server->Handle("/store/", [this](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
    HandleRoot(req, resp);
  });
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
  for (auto& [id, run] : runs_) {
    if (run->driver.joinable()) run->driver.join();
    if (!run->response->closed()) {
      run->ending = true;
      run->response->Finish();
    }
  }
  runs_.clear();
  running_gauge_->Set(0);
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    events_.clear();
  }
  if (async_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) {
      auto* self = static_cast<QueryService*>(h->data);
      if (self != nullptr) self->async_ = nullptr;
      delete reinterpret_cast<uv_async_t*>(h);
    });
  }
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

  ScanRequest request;
  request.from = p.from;
  request.to = p.to;
  request.order = p.order();
  request.limit = p.limit;
  if (p.from <= p.to) request.segments = store_->Select(p.from, p.to);
  uint64_t raw_bytes = 0;
  for (const auto& s : request.segments) raw_bytes += s->raw_bytes();

  const bool head = req.method == "HEAD" || resp->is_head();
  if (!head && runs_.size() >= options_.max_running_queries) {
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
      {"X-Oklog-Error-Count", "0"},
      {"X-Oklog-Duration", FormatDuration(std::chrono::steady_clock::now() - t0)},
  };
  if (head) {
    queries_->With({"stats"})->Inc();
    resp->Start(200, headers);
    resp->Finish();
    return;
  }
  resp->Start(200, headers);
  if (request.segments.empty()) {
    queries_->With({"ok"})->Inc();
    resp->Finish();
    return;
  }

  auto run = std::make_shared<Run>();
  run->id = next_id_++;
  run->response = resp;
  run->start = t0;
  const uint64_t id = run->id;
  resp->OnClose([this, id] { OnClientGone(id); });
  resp->OnDrain([this, id] {
    auto it = runs_.find(id);
    if (it == runs_.end()) return;
    Run& r = *it->second;
    {
      std::lock_guard<std::mutex> lock(r.mu);
      r.buffered = r.response->buffered_bytes();
    }
    r.cv.notify_all();
  });
  runs_[id] = run;
  running_gauge_->Set(static_cast<double>(runs_.size()));
  std::shared_ptr<const Matcher> shared_matcher = std::move(matcher).value();
  run->driver = std::thread(&QueryService::Drive, this, run, std::move(request), shared_matcher, p.format);
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
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    events_.push_back(std::move(event));
  }
  // The async handle outlives every driver: Close() joins them before closing it.
  uv_async_send(async_);
}

void QueryService::OnAsync(uv_async_t* handle) noexcept {
  auto* self = static_cast<QueryService*>(handle->data);
  if (self != nullptr) self->DrainEvents();
}

void QueryService::DrainEvents() {
  std::vector<Event> events;
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    events.swap(events_);
  }
  for (Event& e : events) {
    Run& run = *e.run;
    if (runs_.find(run.id) == runs_.end()) continue;  // already torn down by Close()
    if (!e.end) {
      size_t n = e.chunk.size();
      if (!run.response->closed()) run.response->Write(std::move(e.chunk));
      {
        std::lock_guard<std::mutex> lock(run.mu);
        run.in_transit -= n;
        run.buffered = run.response->closed() ? 0 : run.response->buffered_bytes();
      }
      run.cv.notify_all();
      continue;
    }
    // The driver posted its last event and is returning: the join is immediate.
    if (run.driver.joinable()) run.driver.join();
    const bool client_gone = run.response->closed();
    const char* result = e.status.ok() ? "ok" : (e.status.code() == Code::kCancelled ? "cancelled" : "error");
    if (e.status.ok() && client_gone) result = "cancelled";
    queries_->With({result})->Inc();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - run.start).count();
    duration_->Observe(secs);
    Logger("query")->debug(
        "msg=\"query done\" result={} seconds={:.3f} segments={} blocks_read={} blocks_skipped={} bytes_scanned={} "
        "records={} duplicates={}",
        result, secs, e.stats.segments, e.stats.blocks_read, e.stats.blocks_skipped, e.stats.bytes_scanned,
        e.stats.records, e.stats.duplicates);
    if (!client_gone) {
      run.ending = true;
      run.response->Finish();
    }
    runs_.erase(run.id);
    running_gauge_->Set(static_cast<double>(runs_.size()));
  }
}

}  // namespace oklog
