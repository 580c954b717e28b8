// The query HTTP API: GET|HEAD /store/query and /store/_query (node-local; the same thing until
// fan-out lands), and GET /store/ → 307 to the query, as OK Log. See README.md for parameters,
// headers and status codes.
//
// Threads: every public method and every HTTP callback runs on the loop thread. A GET starts a
// driver thread that runs the QueryExecutor (which scans on a shared pool) and hands formatted
// chunks back through a locked queue and one uv_async_t, drained whole on the loop. The driver
// waits while more than high_water_bytes are in transit or buffered in the response, and a
// client that disconnects cancels the scan at the next block.
//
// Shutdown: Close() cancels every running query, joins the drivers and closes the async
// handle; run the loop until done(), then destroy.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/http_server.h"
#include "common/metrics.h"
#include "common/status.h"
#include "query/query_executor.h"
#include "segments/store_log.h"

namespace oklog {

class QueryService {
 public:
  struct Options {
    size_t scan_threads = 0;  // 0: one per core
    size_t max_running_queries = 64;
    size_t high_water_bytes = 4 << 20;
    size_t chunk_bytes = 64 << 10;
    std::chrono::milliseconds max_chunk_delay{20};  // a partial chunk goes out after this long
    std::function<uint64_t()> now_ms;               // wall clock; default NowUnixMs
  };

  // store must outlive the service. metrics gets oklog_query_*.
  static Result<std::unique_ptr<QueryService>> Create(uv_loop_t* loop, StoreLog* store, Options options,
                                                      Registry* metrics);
  ~QueryService();
  QueryService(const QueryService&) = delete;
  QueryService& operator=(const QueryService&) = delete;

  // Registers /store/query, /store/_query and /store/ on server.
  void Register(HttpServer* server);
  void Close();
  bool done() const { return async_ == nullptr; }
  size_t running() const { return runs_.size(); }

 private:
  struct Run;
  struct Event;
  QueryService(uv_loop_t* loop, StoreLog* store, Options options, Registry* metrics);
  void HandleQuery(const HttpRequest& req, std::shared_ptr<HttpResponse> resp);
  void HandleRoot(const HttpRequest& req, std::shared_ptr<HttpResponse> resp);
  void Drive(std::shared_ptr<Run> run, ScanRequest request, std::shared_ptr<const Matcher> matcher,
             OutputFormat format);  // driver thread
  bool PushChunk(const std::shared_ptr<Run>& run, std::string chunk);  // driver thread
  void Post(Event event);                       // driver thread
  void DrainEvents();                           // loop thread
  void OnClientGone(uint64_t id);
  static void OnAsync(uv_async_t* handle) noexcept;

  uv_loop_t* loop_;
  StoreLog* store_;
  Options options_;
  std::unique_ptr<QueryExecutor> executor_;
  uv_async_t* async_ = nullptr;  // freed in its close callback
  bool closing_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::shared_ptr<Run>> runs_;  // loop thread only

  std::mutex events_mu_;
  std::vector<Event> events_;

  Family<Counter>* queries_;
  Gauge* running_gauge_;
  Histogram* duration_;
};

}  // namespace oklog
