// TcpListener: a listening TCP socket on the loop, bound from an Address (port 0 picks a free
// port, reported by port()). The one copy of bind + listen + getsockname for the HTTP server,
// the RPC server and the ingest listeners.
//
// Thread: loop thread only. Lifetime: the handle is a UvHandle (handle.h): Close() or the
// destructor stops accepting at once; on_connection never runs after either. Run the loop until
// done() (or Close's callback) before uv_loop_close().
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/address.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "common/uv/handle.h"

namespace oklog {

class TcpListener {
 public:
  // Called for each connection waiting to be accepted: call Accept() once on a fresh client
  // handle, even to refuse it (then close the client): until it is accepted libuv stops
  // watching the socket. libuv reports a failed accept(2) (out of descriptors) as status < 0; then there is
  // nothing to accept.
  using OnConnection = std::function<void(TcpListener* listener, int status)>;
  static constexpr int kDefaultBacklog = 511;

  // Resolves addr (a name is looked up: blocking), binds its first address and listens.
  // NotFound when addr does not resolve; IOError "listening on IP:PORT: <libuv's message>"
  // when bind or listen fails (EADDRINUSE, EACCES, ...), with nothing left open.
  static Result<std::unique_ptr<TcpListener>> Create(uv_loop_t* loop, const Address& addr, OnConnection on_connection,
                                                     int backlog = kDefaultBacklog);
  // The same for a socket address already known (an IP literal: nothing to resolve).
  static Result<std::unique_ptr<TcpListener>> Create(uv_loop_t* loop, const sockaddr_storage& addr,
                                                     OnConnection on_connection, int backlog = kDefaultBacklog);
  // Adopts a socket already bound (and maybe listening) elsewhere, as ClusterPort hands it out;
  // the listener owns it from then on, also on failure. IOError when libuv refuses it.
  static Result<std::unique_ptr<TcpListener>> Adopt(uv_loop_t* loop, UniqueFd fd, OnConnection on_connection,
                                                    int backlog = kDefaultBacklog);
  ~TcpListener() = default;  // the UvHandle closes the socket
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  // uv_accept into client (initialised on the same loop): 0 or a libuv error.
  int Accept(uv_stream_t* client);
  // A connection cap: while open_now() (the owner's count of its open connections) is at least
  // max_connections, a new connection is accepted and closed at once, without on_connection
  // (counted by on_shed, and logged at most every 10 s), so that a flood of idle connections
  // on one port cannot take every descriptor of the process. 0: no cap.
  void SetCap(size_t max_connections, std::function<size_t()> open_now, std::function<void()> on_shed);
  uint16_t port() const { return port_; }
  const std::string& bound() const { return bound_; }  // "ip:port" actually bound
  // Stops accepting; on_closed (optional) runs when the handle's close callback has run.
  void Close(std::function<void()> on_closed = nullptr) { tcp_.Close(std::move(on_closed)); }
  bool done() const { return tcp_.state() == UvHandle<uv_tcp_t>::State::kClosed; }

 private:
  explicit TcpListener(OnConnection cb) : on_connection_(std::move(cb)) {}
  static void OnConnectionCb(uv_stream_t* server, int status) noexcept;
  // After bind: uv_listen, then the bound address from getsockname.
  Status ListenAndName(int backlog, const std::string& what);

  void ShedOne();

  OnConnection on_connection_;
  size_t cap_ = 0;
  std::function<size_t()> open_now_;
  std::function<void()> on_shed_;
  uint64_t last_shed_log_ms_ = 0;
  uint64_t shed_since_log_ = 0;
  UvHandle<uv_tcp_t> tcp_;
  uint16_t port_ = 0;
  std::string bound_;
};

}  // namespace oklog
