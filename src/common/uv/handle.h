// UvHandle<T>: owns one libuv handle (uv_tcp_t, uv_timer_t, uv_async_t, ...) with an explicit
// close state, after Node's handle_wrap.h and mediasoup's socket handles.
//
// Rules (CONVENTIONS habit 7), encoded here so that no owner writes them again:
//   1. The raw handle lives in a box allocated apart from its C++ owner, so the owner may die
//      while libuv still holds the handle; the box is freed in the close callback and nowhere
//      else.
//   2. State is explicit: kEmpty (nothing initialised: nothing to close) → kOpen (init returned
//      0) → kClosing (uv_close called) → kClosed (the close callback ran). A failed init leaves
//      kEmpty and frees the box at once: libuv never saw it.
//   3. Callbacks find their object with Data<U>(raw): the pointer given to Init, null from the
//      moment Close is called or the owner is destroyed. A static callback that gets null
//      returns at once ("owner gone").
//   4. Close(on_closed) runs on_closed from the close callback only if the owner is still alive
//      then; on_closed may destroy the owner (the box is detached first). The destructor closes
//      an open handle and forgets on_closed.
//   5. Neither copyable nor movable: the box points back at this object.
// Thread: loop thread only (as every libuv call but uv_async_send).
#pragma once

#include <uv.h>

#include <functional>
#include <utility>

namespace oklog {

template <typename T>
class UvHandle {
 public:
  enum class State { kEmpty, kOpen, kClosing, kClosed };

  UvHandle() = default;
  ~UvHandle() {
    if (box_ == nullptr) return;
    box_->owner = nullptr;
    box_->on_closed = nullptr;
    box_->data = nullptr;
    if (state_ == State::kOpen) uv_close(handle(), &OnClose);
  }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;

  // Runs init(raw) on a fresh raw handle, e.g. [&](uv_timer_t* t) { return uv_timer_init(loop, t); },
  // and returns its result; on 0 the handle is open and carries `data` for Data<U>(). Only from
  // kEmpty (a handle is initialised once).
  template <typename InitFn>
  int Init(void* data, InitFn&& init) {
    if (state_ != State::kEmpty) return UV_EINVAL;
    auto* box = new Box;
    const int rc = std::forward<InitFn>(init)(&box->raw);
    if (rc != 0) {
      delete box;  // never initialised: nothing to close
      return rc;
    }
    box->raw.data = box;
    box->owner = this;
    box->data = data;
    box_ = box;
    state_ = State::kOpen;
    return 0;
  }

  // The raw handle while open or closing (libuv may still call back); null otherwise.
  T* get() const { return box_ != nullptr ? &box_->raw : nullptr; }
  uv_handle_t* handle() const { return reinterpret_cast<uv_handle_t*>(get()); }
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(get()); }
  State state() const { return state_; }
  bool open() const { return state_ == State::kOpen; }

  // The object given to Init, for a callback that received `raw`; null once closing began or
  // the owner is gone.
  template <typename U>
  static U* Data(const T* raw) {
    if (raw == nullptr || raw->data == nullptr) return nullptr;
    return static_cast<U*>(static_cast<Box*>(raw->data)->data);
  }
  template <typename U>
  static U* Data(const uv_handle_t* h) {
    return Data<U>(reinterpret_cast<const T*>(h));
  }

  // Starts closing an open handle; on_closed (optional) runs from its close callback. A no-op
  // unless open.
  void Close(std::function<void()> on_closed = nullptr) {
    if (state_ != State::kOpen) return;
    state_ = State::kClosing;
    box_->data = nullptr;
    box_->on_closed = std::move(on_closed);
    uv_close(handle(), &OnClose);
  }

 private:
  struct Box {
    T raw{};
    UvHandle* owner = nullptr;  // null once the owner is destroyed
    void* data = nullptr;       // what Data<U>() returns
    std::function<void()> on_closed;
  };

  static void OnClose(uv_handle_t* h) noexcept {
    auto* box = static_cast<Box*>(h->data);
    std::function<void()> done = std::move(box->on_closed);
    if (box->owner != nullptr) {
      box->owner->box_ = nullptr;
      box->owner->state_ = State::kClosed;
    }
    delete box;  // the one release point
    if (done) done();  // may destroy the owner: nothing touches it after this
  }

  Box* box_ = nullptr;
  State state_ = State::kEmpty;
};

}  // namespace oklog
