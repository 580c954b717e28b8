// This node's store, queried: GET|HEAD /store/_query (node-local; also /store/query on a node
// without the fan-out), GET /store/ → 307 to the query, as OK Log, and the `query.run` RPC
// (query_messages.h) that a fanning-out node sends to every store. See README.md for
// parameters, headers and status codes.
//
// Threads: every public method, HTTP and RPC callback runs on the loop thread. A GET starts a
// driver thread that runs the QueryExecutor (which scans on a shared pool); a query.run runs on
// one of at most peer_query_threads reused driver threads, so peers' queries neither take the
// users' slots nor start a thread per call. Drivers hand raw or formatted chunks back through a
// LoopPoster (a locked queue and one uv_async_t, drained whole on the loop). A driver waits
// while more than high_water_bytes are in transit or buffered in the response (for query.run:
// while the call's credit window is full), and a client that disconnects or cancels stops the
// scan at the next block.
//
// Shutdown: Close() cancels every running query, joins the drivers and closes the poster; run
// the loop until done(), then destroy.
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
#include "common/uv/loop_poster.h"
#include "query/query_messages.h"
#include "query/query_executor.h"
#include "rpc/rpc_server.h"
#include "segments/store_log.h"

namespace oklog {

class QueryService {
 public:
  struct Options {
    size_t scan_threads = 0;  // 0: one per core
    size_t max_running_queries = 64;       // user GETs; more get 503
    size_t peer_query_threads = 16;        // drivers for query.run, started on demand
    size_t max_queued_peer_queries = 256;  // query.run waiting for a driver; more get Unavailable
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
  // Serves query.run on server (which must outlive this service or be closed first).
  void Serve(rpc::RpcServer* server);
  // A cluster store: query.run answers name the batches of the range that only stores the
  // fan-out did not ask hold (segments/holdings.h). Loop thread; `holdings` outlives the service.
  void SetHoldings(const HoldingsExchange* holdings) { holdings_ = holdings; }
  void Close();
  bool done() const { return poster_->done(); }
  size_t running() const { return runs_.size(); }  // user and peer queries scanning

 private:
  struct Run;
  struct Event;
  class PeerDrivers;
  struct Plan {
    ScanRequest request;
    uint64_t raw_bytes = 0;
    std::vector<Gap> gaps;  // of the range, lost to bad blocks and not got back (StoreLog::UnhealedGaps)
  };
  QueryService(StoreLog* store, Options options, Registry* metrics);
  Plan MakePlan(const Ulid& from, const Ulid& to, ScanOrder order, std::optional<uint64_t> limit);
  void HandleQuery(const HttpRequest& req, std::shared_ptr<HttpResponse> resp);
  void HandleRun(std::shared_ptr<rpc::ServerCall> call);
  std::shared_ptr<Run> AddRun(std::chrono::steady_clock::time_point start);
  void Wake(Run& run);  // loop thread: the output drained or the client went away
  void HandleRoot(const HttpRequest& req, std::shared_ptr<HttpResponse> resp);
  void Drive(std::shared_ptr<Run> run, ScanRequest request, std::shared_ptr<const Matcher> matcher,
             OutputFormat format);  // driver thread
  bool PushChunk(const std::shared_ptr<Run>& run, std::string chunk);  // driver thread
  void Post(Event event);                       // driver thread
  void HandleEvent(Event& event);               // loop thread
  void OnClientGone(uint64_t id);

  StoreLog* store_;
  const HoldingsExchange* holdings_ = nullptr;
  Options options_;
  std::unique_ptr<QueryExecutor> executor_;
  std::unique_ptr<LoopPoster> poster_;  // drivers -> loop: chunks and ends, in order
  bool closing_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::shared_ptr<Run>> runs_;  // loop thread only
  std::unique_ptr<PeerDrivers> peer_drivers_;


  Family<Counter>* queries_;
  Family<Counter>* peer_queries_;
  Gauge* running_gauge_;
  Histogram* duration_;
};

}  // namespace oklog
