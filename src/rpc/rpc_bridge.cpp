#include "rpc/rpc_bridge.h"

namespace oklog::rpc {

Result<std::unique_ptr<RpcBridge>> RpcBridge::Create(uv_loop_t* loop, RpcClient* client) {
  std::unique_ptr<RpcBridge> b(new RpcBridge(client));
  OKLOG_ASSIGN_OR_RETURN(b->poster_, LoopPoster::Create(loop));
  return b;
}

RpcBridge::~RpcBridge() { Close(); }

bool RpcBridge::Post(std::function<void(bool)> job) { return poster_->Post(std::move(job)); }
std::future<Result<std::string>> RpcBridge::CallAsync(const std::string& addr, const std::string& method,
                                                      std::string body, Duration timeout) {
  auto promise = std::make_shared<std::promise<Result<std::string>>>();
  std::future<Result<std::string>> f = promise->get_future();
  bool posted = Post([this, promise, addr, method, body = std::move(body), timeout](bool run) mutable {
    if (!run) {
      promise->set_value(Status::Cancelled("rpc bridge closed"));
      return;
    }
    client_->Call(addr, method, std::move(body), timeout,
                  [promise](Result<std::string> r) { promise->set_value(std::move(r)); });
  });
  if (!posted) promise->set_value(Status::Cancelled("rpc bridge closed"));
  return f;
}

Status RpcBridge::RunOnLoop(std::function<void()> fn) {
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> f = promise->get_future();
  bool posted = Post([promise, fn = std::move(fn)](bool run) {
    if (run) fn();
    promise->set_value(run ? Status::Ok() : Status::Cancelled("rpc bridge closed"));
  });
  if (!posted) return Status::Cancelled("rpc bridge closed");
  return f.get();
}

void RpcBridge::Close() { poster_->Close(); }  // queued jobs run with run=false: Cancelled

}  // namespace oklog::rpc
