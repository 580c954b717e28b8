#include "rpc/rpc_bridge.h"

namespace oklog::rpc {

Result<std::unique_ptr<RpcBridge>> RpcBridge::Create(uv_loop_t* loop, RpcClient* client) {
  std::unique_ptr<RpcBridge> b(new RpcBridge(loop, client));
  auto* a = new uv_async_t;
  int rc = uv_async_init(loop, a, OnAsync);
  if (rc != 0) {
    delete a;
    return Status::IOError(std::string("uv_async_init: ") + uv_strerror(rc));
  }
  a->data = b.get();
  b->async_ = a;
  return b;
}

RpcBridge::~RpcBridge() {
  Close();
}

bool RpcBridge::Post(std::function<void(bool)> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    jobs_.push_back(std::move(job));
    uv_async_send(async_);
  }
  return true;
}

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

void RpcBridge::OnAsync(uv_async_t* a) noexcept {
  auto* self = static_cast<RpcBridge*>(a->data);
  if (!self) return;
  std::vector<std::function<void(bool)>> jobs;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    jobs.swap(self->jobs_);
  }
  for (auto& j : jobs) j(true);
}

void RpcBridge::Close() {
  std::vector<std::function<void(bool)>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    jobs.swap(jobs_);
  }
  for (auto& j : jobs) j(false);
  if (async_) {
    async_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    async_ = nullptr;
  }
}

}  // namespace oklog::rpc
