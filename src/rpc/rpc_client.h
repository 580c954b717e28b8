// RpcClient: calls data-plane methods on other nodes' cluster ports (grammar in rpc.h). One
// connection per remote address, opened on first use and reopened on the next call after it
// broke; many calls share it, multiplexed by id. Every call has a deadline.
//
// Thread: loop thread only; callbacks run on the loop thread, each exactly once per call
// (on_end / the unary callback), possibly before Call() returns when the call fails at once.
// Lifetime: Close() fails every call in progress with Cancelled and closes the connections;
// run the loop until the close callbacks fired before uv_loop_close().
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "common/crypto/keyring.h"
#include "common/status.h"
#include "rpc/rpc.h"

namespace oklog {
class Registry;
}

namespace oklog::rpc {

class RpcClientImpl;

class RpcClient {
 public:
  struct Options {
    std::string cluster_name = "oklog";
    std::string node_name;
    // After a failed connect, calls to that address fail at once for this long.
    Duration reconnect_backoff{200};
    // A call that timed out on a connection that received nothing while it waited makes the
    // client ping the server ("rpc.ping"); without an answer within this, the connection is
    // closed and its other calls fail with Unavailable (a frozen or cut-off peer holds nothing).
    Duration liveness_timeout{2000};
    // A connection with no call that received nothing this long is closed (the next call
    // redials; counted in oklog_rpc_connections_closed_total{reason="idle"}); 0: never. Keep
    // it below the servers' RpcServer::Options::idle_timeout.
    Duration idle_timeout{120000};
    // As RpcServer::Options::keyring: set, every connection is sealed with it.
    std::shared_ptr<const crypto::Keyring> keyring;
    // Partial frames from peers are charged to it (common/memory_budget.h); null: no bound.
    MemoryBudget* memory_budget = nullptr;
  };
  static std::unique_ptr<RpcClient> Create(uv_loop_t* loop, Options options, Registry* metrics);
  ~RpcClient();
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  // Unary call: `done` gets the whole response body, or Unavailable (no connection),
  // TimedOut (deadline), Cancelled (Close), ResourceExhausted (response over the message
  // limit, kRpcMaxMessageBytes: the rest is cancelled, never buffered), Corruption (the server
  // broke the credit window, as for Stream), or the remote handler's status.
  using UnaryCallback = std::function<void(Result<std::string>)>;
  void Call(const std::string& addr, const std::string& method, std::string body, Duration timeout,
            UnaryCallback done);

  // Server-streaming call: on_chunk gets each part as it arrives, on_end the final status once.
  // Flow control: with kAuto, a part counts as consumed when on_chunk returns; with kManual the
  // caller reports consumption with Consume(), and the server stops sending when
  // kRpcStreamWindowBytes are unconsumed (so buffering is bounded on both sides).
  // The client enforces the window: a server that sends more than kRpcStreamWindowBytes past
  // what this client credited breaks the grammar; its connection closes (counted as
  // oklog_rpc_streams_dropped_total{reason="window"}), the call ends with Corruption and the
  // other calls to that peer with Unavailable. So the parts a kManual caller holds unconsumed
  // never exceed the window, whatever the server does.
  // `timeout` bounds the whole call; `idle_timeout` (0: none) the gap between parts.
  enum class Credit { kAuto, kManual };
  struct StreamOptions {
    Duration timeout{30000};
    Duration idle_timeout{0};
    Duration first_part_timeout{0};  // 0: none; else TimedOut when no part came within it
    Credit credit = Credit::kAuto;
    // 0: unlimited. Else the answer's bound: the part that would take it past max_bytes is not
    // delivered, the call ends ResourceExhausted and the server gets a cancel.
    uint64_t max_bytes = 0;
  };
  struct StreamHandlers {
    std::function<void(std::string part)> on_chunk;
    std::function<void(const Status&)> on_end;
  };
  // Returns a handle for Consume()/Cancel(); 0 when the call failed at once (on_end ran).
  // Consume() credits at most the bytes the call has delivered and not yet been credited for.
  uint64_t Stream(const std::string& addr, const std::string& method, std::string body, StreamOptions options,
                  StreamHandlers handlers);
  void Consume(uint64_t handle, size_t bytes);
  // Ends the call with Cancelled (on_end runs) and tells the server.
  void Cancel(uint64_t handle);

  // Closes the connection to addr now (a peer gossip calls suspect, dead or gone): every call on
  // it ends with Unavailable("rpc: ADDR: <why>"); the next call opens a new one. Counted in
  // oklog_rpc_connections_closed_total{reason="peer_down"}. No-op without a connection.
  void Disconnect(const std::string& addr, const std::string& why);

  // As RpcServer::SetKeyring: connections sealed with a removed key are closed (their calls
  // fail with Unavailable) and the next call redials with the new primary.
  void SetKeyring(std::shared_ptr<const crypto::Keyring> ring);
  void Close();
  size_t connections() const;

 private:
  explicit RpcClient(std::unique_ptr<RpcClientImpl> impl);
  std::unique_ptr<RpcClientImpl> impl_;
};

}  // namespace oklog::rpc
