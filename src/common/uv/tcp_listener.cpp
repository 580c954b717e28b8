#include "common/uv/tcp_listener.h"

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

void TcpListener::OnConnectionCb(uv_stream_t* server, int status) noexcept {
  auto* self = UvHandle<uv_tcp_t>::Data<TcpListener>(reinterpret_cast<uv_tcp_t*>(server));
  if (self == nullptr || !self->on_connection_) return;
  self->on_connection_(self, status);
}

}  // namespace oklog
