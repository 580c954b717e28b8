// The live stream across the cluster (DESIGN.md §8). Two halves, both in StreamFanout:
//
// Serving `stream.open` (every node): a peer's subscription into this node's StreamRegistry,
// streamed back as RPC parts. Request body: the typed filter (q, mode, topics: EncodeStreamOpen in
// query_messages.h; a body that does not decode is InvalidArgument, counted). Response (server-streaming): records
// "ULID SP topic SP line LF" as they arrive (parts may cut a record: the receiver reassembles),
// never ending by itself; a bad filter ends at once with InvalidArgument. The RPC credit window
// bounds what is in flight; a peer that does not read is dropped-and-noticed like any slow
// subscriber (the notice record travels to the client).
//
// Fanning out (the node a client asked): for every /store/stream subscription, one `stream.open`
// to every other live peer that ingests or stores, feeding that subscription (whose window
// de-duplicates). The peer set is re-read every second and on every membership event: streams
// start for new peers and are cancelled for gone ones; a peer stream that fails is reopened
// after a second while the peer stays live. The client's disconnect cancels them all.
//
// Threads: loop thread only. Lifetime: Close() before the RPC client, server and peer view
// close; then run the loop until done().
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/metrics.h"
#include "common/status.h"
#include "gossip/peer_view.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"
#include "query/query_messages.h"
#include "query/stream_registry.h"

namespace oklog {

class StreamFanout {
 public:
  struct Options {
    std::chrono::milliseconds refresh{1000};  // re-read the peer view
    std::chrono::milliseconds retry{1000};    // reopen a failed peer stream after this long
  };
  // Registers the stream.open handler on server. Every pointer must outlive Close().
  StreamFanout(uv_loop_t* loop, StreamRegistry* registry, gossip::PeerView* view, rpc::RpcServer* server,
               rpc::RpcClient* client, Options options, Registry* metrics);
  ~StreamFanout();
  StreamFanout(const StreamFanout&) = delete;
  StreamFanout& operator=(const StreamFanout&) = delete;

  // Starts streams from every live peer for subscription id (already subscribed in the
  // registry); they stop when End(id) is called (the registry's on_end) or at Close().
  void Start(StreamId id, const MatchSpec& match);
  void End(StreamId id);
  // Peers a new subscription would stream from now.
  size_t peers() const;
  void Close();
  bool done() const { return timer_ == nullptr; }

 private:
  struct PeerStream {
    std::string addr;
    uint64_t handle = 0;
    uint64_t generation = 0;  // callbacks of an older stream are ignored
    bool open = false;
    uint64_t retry_at_ms = 0;
    std::string carry;  // an incomplete record from the previous part
  };
  struct Fan {
    std::string body;
    std::map<gossip::NodeName, PeerStream> peers;
  };
  void Reconcile();
  void Reconcile(StreamId id, Fan* fan, uint64_t now);
  void Open(StreamId id, Fan* fan, const gossip::NodeName& name, const std::string& addr);
  void OnPart(StreamId id, const gossip::NodeName& name, uint64_t generation, std::string part);
  void OnPeerEnd(StreamId id, const gossip::NodeName& name, uint64_t generation, const Status& status);
  void Serve(std::shared_ptr<rpc::ServerCall> call);
  static void OnTimer(uv_timer_t* t) noexcept;

  uv_loop_t* loop_;
  StreamRegistry* registry_;
  gossip::PeerView* view_;
  rpc::RpcClient* client_;
  Options options_;
  uv_timer_t* timer_ = nullptr;  // freed in its close callback
  uint64_t view_listener_ = 0;
  bool closed_ = false;
  uint64_t next_generation_ = 1;
  std::map<StreamId, Fan> fans_;

  Gauge* peer_streams_;
  Counter* peer_failures_;
  Counter* served_;
  Counter* bad_requests_;
};

}  // namespace oklog
