// RpcBridge: lets plain threads (the store's consumer threads) use the loop-thread RpcClient and
// read loop-thread state (the PeerView). A request is posted through a LoopPoster (a locked
// queue and one uv_async_t, drained whole); the calling thread waits on a future.
//
// Thread: Create, Close and destruction on the loop thread; Call/CallAsync/RunOnLoop from any
// thread other than the loop thread (they would deadlock on it).
// Lifetime: Close() fails queued and future requests with Cancelled and closes the async
// handle; the RpcClient must stay open until Close() (calls in flight end with its own Close).
#pragma once

#include <uv.h>

#include <functional>
#include <future>
#include <memory>
#include <string>

#include "common/status.h"
#include "common/uv/loop_poster.h"
#include "rpc/rpc_client.h"

namespace oklog::rpc {

class RpcBridge {
 public:
  static Result<std::unique_ptr<RpcBridge>> Create(uv_loop_t* loop, RpcClient* client);
  ~RpcBridge();
  RpcBridge(const RpcBridge&) = delete;
  RpcBridge& operator=(const RpcBridge&) = delete;

  std::future<Result<std::string>> CallAsync(const std::string& addr, const std::string& method, std::string body,
                                             Duration timeout);
  Result<std::string> Call(const std::string& addr, const std::string& method, std::string body, Duration timeout) {
    return CallAsync(addr, method, std::move(body), timeout).get();
  }
  // Runs fn on the loop and waits for it. Returns Cancelled (fn not run) once closed.
  Status RunOnLoop(std::function<void()> fn);

  void Close();

 private:
  explicit RpcBridge(RpcClient* client) : client_(client) {}
  bool Post(std::function<void(bool run)> job);  // run=false: cancelled

  RpcClient* client_;
  std::unique_ptr<LoopPoster> poster_;
};

}  // namespace oklog::rpc
