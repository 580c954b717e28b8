// The live stream HTTP API: GET /store/stream (this node's records and, once EnableFanout was
// called, every live peer's) and /store/_stream (this node's only). Parameters: q, regex (presence flag), topic (repeatable),
// format (text|json), window (Go duration, default 3s, raised to 100ms; unparsable is a 400).
// The response is chunked, `ULID SP topic SP line LF` records as they arrive, and never ends by
// itself; see README.md, "Live stream".
//
// Threads: loop thread only. Publish() is what IngestServerOptions::on_records calls.
// Shutdown: Close() finishes every stream; call it before the HTTP server closes.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/http_server.h"
#include "common/metrics.h"
#include "common/status.h"
#include "gossip/peer_view.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"
#include "query/stream_fanout.h"
#include "query/stream_registry.h"

namespace oklog {

// The stream's parameters from a decoded query string. InvalidArgument with the 400 message
// ("parsing 'window': ...", "parsing 'format': ...") on bad input; the regex is compiled at
// subscription ("compiling regex: ...").
Result<StreamSpec> ParseStreamParams(const std::multimap<std::string, std::string>& params);

inline constexpr std::chrono::milliseconds kDefaultStreamWindow{3000};
inline constexpr std::chrono::milliseconds kMinStreamWindow{100};

class StreamService {
 public:
  // metrics gets oklog_stream_*; it must outlive the service.
  StreamService(StreamRegistry::Options options, Registry* metrics);
  StreamService(const StreamService&) = delete;
  StreamService& operator=(const StreamService&) = delete;

  // Registers /store/stream and /store/_stream on server.
  void Register(HttpServer* server);
  // Offers freshly ingested records (complete "ULID SP topic SP line LF" lines) to every stream.
  void Publish(std::string_view records) { registry_.Publish(records); }
  // Cluster mode: serves stream.open to peers and makes /store/stream fan out to them (see
  // stream_fanout.h). The pointers must stay valid until Close().
  void EnableFanout(uv_loop_t* loop, gossip::PeerView* view, rpc::RpcServer* server, rpc::RpcClient* client,
                    StreamFanout::Options options = {});
  // Ends every stream (theirs and ours to peers). Call before the RPC client, server and HTTP
  // server close; then run the loop until done().
  void Close();
  bool done() const { return fanout_ == nullptr || fanout_->done(); }
  StreamRegistry* registry() { return &registry_; }

 private:
  void Handle(const HttpRequest& req, std::shared_ptr<HttpResponse> resp);

  Registry* metrics_;
  StreamRegistry registry_;
  std::unique_ptr<StreamFanout> fanout_;
  bool closing_ = false;
  Family<Counter>* requests_;
};

}  // namespace oklog
