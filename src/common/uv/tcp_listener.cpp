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
  int rc = uv_tcp_bind(l->tcp_.get(), sa, 0);
  if (rc == 0) rc = uv_listen(l->tcp_.stream(), backlog, &TcpListener::OnConnectionCb);
  // On failure ~l closes tcp_.
  if (rc != 0) return Status::IOError("listening on " + SockaddrToString(sa) + ": " + uv_strerror(rc));
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (Status s = UvStatus(uv_tcp_getsockname(l->tcp_.get(), reinterpret_cast<sockaddr*>(&ss), &len),
                          "uv_tcp_getsockname");
      !s.ok())
    return s;
  l->bound_ = SockaddrToString(reinterpret_cast<const sockaddr*>(&ss));
  l->port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  return l;
}

int TcpListener::Accept(uv_stream_t* client) { return uv_accept(tcp_.stream(), client); }

void TcpListener::OnConnectionCb(uv_stream_t* server, int status) noexcept {
  auto* self = UvHandle<uv_tcp_t>::Data<TcpListener>(reinterpret_cast<uv_tcp_t*>(server));
  if (self == nullptr || !self->on_connection_) return;
  self->on_connection_(self, status);
}

}  // namespace oklog
