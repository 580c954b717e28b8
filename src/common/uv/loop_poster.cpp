#include "common/uv/loop_poster.h"

#include "common/uv/check.h"

namespace oklog {

struct LoopPoster::Box {
  uv_async_t h;
  LoopPoster* owner = nullptr;  // null once the poster is gone
};

Result<std::unique_ptr<LoopPoster>> LoopPoster::Create(uv_loop_t* loop) {
  std::unique_ptr<LoopPoster> p(new LoopPoster);
  auto* box = new Box;
  if (Status s = UvStatus(uv_async_init(loop, &box->h, &LoopPoster::OnAsync), "uv_async_init"); !s.ok()) {
    delete box;  // never initialised: nothing to close
    return s;
  }
  box->h.data = box;
  box->owner = p.get();
  p->box_ = box;
  return p;
}

LoopPoster::~LoopPoster() {
  Close();
  if (box_ != nullptr) box_->owner = nullptr;  // the close callback is still to come
}

bool LoopPoster::Post(Job job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return false;
  jobs_.push_back(std::move(job));
  // Under the lock: Close() cannot close the handle between the check and the send.
  uv_async_send(&box_->h);
  return true;
}

void LoopPoster::OnAsync(uv_async_t* a) noexcept {
  auto* box = static_cast<Box*>(a->data);
  LoopPoster* self = box->owner;
  if (self == nullptr) return;
  std::vector<Job> jobs;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    jobs.swap(self->jobs_);
  }
  for (Job& j : jobs) j(true);
}

void LoopPoster::Close() {
  std::vector<Job> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    jobs.swap(jobs_);
  }
  for (Job& j : jobs) j(false);
  if (box_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(&box_->h), [](uv_handle_t* h) {
      auto* box = static_cast<Box*>(h->data);
      if (box->owner != nullptr) box->owner->box_ = nullptr;
      delete box;
    });
  }
}

}  // namespace oklog
