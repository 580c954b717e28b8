#include "common/uv/work_pool.h"

namespace oklog {

Result<std::unique_ptr<WorkPool>> WorkPool::Create(uv_loop_t* loop, size_t threads, std::string name) {
  if (threads == 0) return Status::InvalidArgument("work pool " + name + ": no threads");
  std::unique_ptr<WorkPool> p(new WorkPool);
  OKLOG_ASSIGN_OR_RETURN(p->poster_, LoopPoster::Create(loop));
  p->name_ = std::move(name);
  for (size_t i = 0; i < threads; ++i) p->threads_.emplace_back([self = p.get()] { self->Run(); });
  return p;
}

WorkPool::~WorkPool() { Close(); }

bool WorkPool::Submit(Work work, After after) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return false;
    queue_.push_back(Job{std::move(work), std::move(after)});
  }
  ++in_flight_;
  cv_.notify_one();
  return true;
}

void WorkPool::Run() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing and nothing left to take
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job.work();
    // The after-work callback runs on the loop whether or not the poster is closing by then:
    // the work was done and its owner must hear of it (run=false only says the poster closes).
    auto after = std::make_shared<After>(std::move(job.after));
    const bool posted = poster_->Post([this, after](bool) {
      --in_flight_;
      (*after)(Status::Ok());
    });
    // Close() joins this thread before it closes the poster, so a post cannot be refused.
    (void)posted;
  }
}

void WorkPool::Close() {
  std::deque<Job> cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return;
    closing_ = true;
    cancelled.swap(queue_);
  }
  cv_.notify_all();
  for (Job& j : cancelled) {
    --in_flight_;
    j.after(Status::Cancelled("work pool " + name_ + " closed"));
  }
  for (std::thread& t : threads_) t.join();  // running jobs finish; their afters are posted
  poster_->Close();                          // runs those afters now, then closes the handle
}

}  // namespace oklog
