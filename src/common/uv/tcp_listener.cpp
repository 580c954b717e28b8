#include "common/uv/tcp_listener.h"

#include "common/log.h"
#include "common/uv/check.h"

namespace oklog {

Result<std::unique_ptr<TcpListener>> TcpListener::Create(uv_loop_t* loop, const Address& addr,
                                                         OnConnection on_connection, int backlog) {
  OKLOG_ASSIGN_OR_RETURN(std::vector<sockaddr_storage> resolved, Resolve(addr));
  return Create(loop, resolved.front(), std::move(on_connection), backlog);
}

Result<std::unique_ptr<TcpListener>> TcpListener::Create(uv_loop_t* loop, const sockaddr_storage& addr,
                                                         OnConnection on_connection, int backlog) {
  std::unique_ptr<TcpListener> l(new TcpListener(std::move(on_connection)));
  OKLOG_UV_CHECK(l->tcp_.Init(l.get(), [loop](uv_tcp_t* t) { return uv_tcp_init(loop, t); }));
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);
  // On failure ~l closes tcp_.
  if (int rc = uv_tcp_bind(l->tcp_.get(), sa, 0); rc != 0)
    return Status::IOError("listening on " + SockaddrToString(sa) + ": " + uv_strerror(rc));
  OKLOG_RETURN_IF_ERROR(l->ListenAndName(backlog, SockaddrToString(sa)));
  return l;
}

Result<std::unique_ptr<TcpListener>> TcpListener::Adopt(uv_loop_t* loop, UniqueFd fd, OnConnection on_connection,
                                                        int backlog) {
  std::unique_ptr<TcpListener> l(new TcpListener(std::move(on_connection)));
  OKLOG_UV_CHECK(l->tcp_.Init(l.get(), [loop](uv_tcp_t* t) { return uv_tcp_init(loop, t); }));
  const int raw = fd.get();
  if (int rc = uv_tcp_open(l->tcp_.get(), raw); rc != 0)
    return Status::IOError("adopting listening socket " + std::to_string(raw) + ": " + uv_strerror(rc));
  fd.release();  // the handle closes it now
  OKLOG_RETURN_IF_ERROR(l->ListenAndName(backlog, "socket " + std::to_string(raw)));
  return l;
}

Status TcpListener::ListenAndName(int backlog, const std::string& what) {
  if (int rc = uv_listen(tcp_.stream(), backlog, &TcpListener::OnConnectionCb); rc != 0)
    return Status::IOError("listening on " + what + ": " + uv_strerror(rc));
  sockaddr_storage ss{};
  int len = sizeof ss;
  OKLOG_RETURN_IF_ERROR(
      UvStatus(uv_tcp_getsockname(tcp_.get(), reinterpret_cast<sockaddr*>(&ss), &len), "uv_tcp_getsockname"));
  bound_ = SockaddrToString(reinterpret_cast<const sockaddr*>(&ss));
  port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port
                                         : reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  return Status::Ok();
}

int TcpListener::Accept(uv_stream_t* client) { return uv_accept(tcp_.stream(), client); }

void TcpListener::SetCap(size_t max_connections, std::function<size_t()> open_now, std::function<void()> on_shed) {
  cap_ = max_connections;
  open_now_ = std::move(open_now);
  on_shed_ = std::move(on_shed);
}

// Accepted into a handle of its own and closed: libuv has already taken the connection off the
// queue, and only uv_accept hands it over (then it watches the listener again).
void TcpListener::ShedOne() {
  auto* client = new uv_tcp_t;
  if (uv_tcp_init(tcp_.get()->loop, client) != 0) {
    delete client;
    return;
  }
  uv_accept(tcp_.stream(), reinterpret_cast<uv_stream_t*>(client));
  uv_close(reinterpret_cast<uv_handle_t*>(client), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
  if (on_shed_) on_shed_();
  ++shed_since_log_;
  const uint64_t now = uv_now(tcp_.get()->loop);
  if (last_shed_log_ms_ == 0 || now - last_shed_log_ms_ >= 10000) {
    Logger("net")->warn("listener {}: {} connection(s) refused at the cap of {} open connections", bound_,
                        shed_since_log_, cap_);
    last_shed_log_ms_ = now;
    shed_since_log_ = 0;
  }
}

void TcpListener::OnConnectionCb(uv_stream_t* server, int status) noexcept {
  auto* self = UvHandle<uv_tcp_t>::Data<TcpListener>(reinterpret_cast<uv_tcp_t*>(server));
  if (self == nullptr || !self->on_connection_) return;
  if (status == 0 && self->cap_ > 0 && self->open_now_ && self->open_now_() >= self->cap_) return self->ShedOne();
  self->on_connection_(self, status);
}

}  // namespace oklog
