// RpcServer: serves data-plane methods (and gossip push/pull) on the cluster TCP port, in the
// grammar of rpc.h. Handlers run on the loop thread and answer through a ServerCall, at once or
// later (after work on a worker thread); heavy work must not run in the handler itself.
//
// Thread: loop thread only, for RpcServer and ServerCall alike.
// Lifetime: Close() closes the listener (if it owns one) and every connection; in-progress
// calls are cancelled (their OnCancel runs) and later answers are dropped. Run the loop until
// done() before uv_loop_close(). A ServerCall may outlive the server: it is then inert.
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/crypto/keyring.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "rpc/rpc.h"

namespace oklog {
class Registry;
}

namespace oklog::rpc {

class RpcConn;
class RpcServerImpl;

// One incoming call. Unary: Respond() once. Server-streaming: Send() parts, then End().
class ServerCall {
 public:
  const std::string& method() const { return method_; }
  const std::string& body() const { return body_; }
  std::string& mutable_body() { return body_; }
  const std::string& peer() const { return peer_; }  // remote "ip:port"
  const std::string& peer_name() const { return peer_name_; }

  // Unary answer: one response frame, or chunks then end for a large body. Ignored after
  // the call ended or was cancelled.
  void Respond(const Status& status, std::string body = "");
  // Streams one part (split into chunks of at most kRpcChunkBytes). Returns false when the
  // call is over (cancelled, connection gone): stop producing. Parts beyond the window wait in
  // this call's queue; producers should respect writable() so the queue stays bounded.
  bool Send(std::string part);
  void End(const Status& status);
  // True while the bytes queued here plus those unacknowledged by the client are below the
  // window (kRpcStreamWindowBytes): produce more only then.
  bool writable() const;
  // Called once each time writable() turns true again after having been false.
  void OnWritable(std::function<void()> cb) { on_writable_ = std::move(cb); }
  // Called once if the client cancels, the deadline passes on its side, or the connection or
  // server closes before End()/Respond().
  void OnCancel(std::function<void()> cb) { on_cancel_ = std::move(cb); }
  bool over() const { return over_; }

 private:
  friend class RpcServerImpl;
  void Pump();
  void Finish();
  RpcServerImpl* server_ = nullptr;  // null once the call is over
  RpcConn* conn_ = nullptr;
  uint64_t id_ = 0;
  std::string method_, body_, peer_, peer_name_;
  std::deque<std::string> queue_;  // chunks waiting for window
  size_t queued_bytes_ = 0;
  uint64_t sent_ = 0, credited_ = 0;
  bool over_ = false, ended_ = false, streamed_ = false, was_blocked_ = false;
  Status end_status_;
  std::function<void()> on_writable_, on_cancel_;
};

class RpcServer {
 public:
  struct Options {
    std::string cluster_name = "oklog";
    std::string node_name;
    Duration hello_timeout{5000};
    // A connection with no call in flight that sent nothing this long is closed (counted as
    // reason "idle"); 0: never. Longer than RpcClient's own idle close, so a live client closes
    // first and never races it.
    Duration idle_timeout{300000};
    // At this many open connections a new one is closed at once (reason "cap"); 0: no cap.
    size_t max_connections = 0;
    // Set: every connection is sealed with it (common/crypto/seal.h) and a peer without one of
    // its keys is refused before its hello; null: frames travel in the clear.
    std::shared_ptr<const crypto::Keyring> keyring;
    // Partial frames from peers are charged to it (common/memory_budget.h); null: no bound.
    MemoryBudget* memory_budget = nullptr;
  };
  static std::unique_ptr<RpcServer> Create(uv_loop_t* loop, Options options, Registry* metrics);
  ~RpcServer();
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  using Handler = std::function<void(std::shared_ptr<ServerCall>)>;
  // Registers (or replaces) the handler of `method`. Unknown methods get NotFound.
  void Handle(const std::string& method, Handler handler);
  // Binds and listens on "ip:port" (port 0 picks one): the cluster port's TCP side, whose UDP
  // side is gossip's. Returns InvalidArgument for a name, IOError when it cannot bind.
  Status Listen(const std::string& addr);
  // Serves on a listening socket bound elsewhere (ClusterPort::TakeTcp); IOError when libuv
  // refuses it.
  Status Listen(UniqueFd listening);
  uint16_t port() const;
  // A reread key file: new connections use `ring`; open ones sealed with a key it no longer
  // holds are closed (counted as reason "rekeyed"). Only for a server created with a keyring.
  void SetKeyring(std::shared_ptr<const crypto::Keyring> ring);
  void Close();
  bool done() const;
  size_t connections() const;

 private:
  explicit RpcServer(std::unique_ptr<RpcServerImpl> impl);
  std::unique_ptr<RpcServerImpl> impl_;
};

}  // namespace oklog::rpc
