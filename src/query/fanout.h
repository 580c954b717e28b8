// Query fan-out (DESIGN.md §8). Two halves:
//
// QueryFanout (every node): GET|HEAD /store/query asks every live store peer (suspect ones too)
// with the RPC `query.run`, merges their ULID-sorted streams with duplicates removed while
// streaming to the client, and answers OK Log's headers: Nodes-Queried and Segments-Queried
// summed, Max-Data-Set-Size the maximum, Error-Count the peers that failed. 206 when any peer
// failed (before or during its stream), 503 "no store nodes available" when the view has none.
// Relative bounds are resolved here once, so every peer scans the same ULID range.
//
// QueryRelay (store nodes): serves `query.run` by asking this node's own node-local endpoint
// (/store/_query on the API port) on a relay thread, so the query engine is reused as is.
//
//   query.run request:  "GET\n" | "HEAD\n", then the URL query string (from/to as ULIDs)
//   query.run response (server-streaming): part 1 = stats, "Name: value\n" lines (the
//   X-Oklog-* headers and Content-Type of the local answer) after a first line "status N";
//   then the local body, in order, as further parts; end status OK or the failure.
//
// Threads: loop thread for both classes; relay threads only block on local HTTP and post back
// through the RpcBridge. Lifetime: Close() on the loop cancels everything; destroy (joining the
// relay threads) after the loop has ended or from a thread that is not the loop thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/http_server.h"
#include "common/metrics.h"
#include "gossip/peer_view.h"
#include "rpc/rpc_bridge.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"

namespace oklog {

inline constexpr const char* kQueryRun = "query.run";

class QueryFanout {
 public:
  struct Options {
    std::chrono::milliseconds peer_timeout{120000};  // whole answer of one peer
    std::chrono::milliseconds peer_idle_timeout{30000};  // between parts of one peer
    size_t high_water_bytes = 4 << 20;  // response bytes buffered before merging pauses
  };
  QueryFanout(gossip::PeerView* view, rpc::RpcClient* client, Options options, Registry* metrics);
  ~QueryFanout();
  // Registers /store/query (replacing a node-local handler registered before).
  void Register(HttpServer* server);
  void Close();

  struct Fan;

 private:
  void Handle(const HttpRequest& req, std::shared_ptr<HttpResponse> resp);
  gossip::PeerView* view_;
  rpc::RpcClient* client_;
  Options options_;
  bool closed_ = false;
  std::vector<std::weak_ptr<Fan>> fans_;
  Family<Counter>* queries_;
  Counter* peer_errors_;
};

class QueryRelay {
 public:
  // api: "host:port" of this node's HTTP API.
  QueryRelay(rpc::RpcServer* server, rpc::RpcBridge* bridge, std::string api);
  ~QueryRelay();
  void Close();

  struct Run;

 private:
  rpc::RpcBridge* bridge_;
  std::string api_;
  std::mutex mu_;
  bool closed_ = false;
  std::vector<std::pair<std::shared_ptr<Run>, std::thread>> runs_;
};

}  // namespace oklog
